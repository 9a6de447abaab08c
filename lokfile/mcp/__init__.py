"""mcp: `lok mcp`, lok as a tool for coding agents over the Model Context Protocol.

    agent (Claude Code, Codex, Gemini CLI, Cursor)
      │ stdio, or streamable HTTP on 127.0.0.1
      v
    server       the only importer of the `mcp` SDK: tool schemas, progress, transports
      │ plain calls, in worker threads
      v
    tools        each tool over api / agents / history: the CLI's --json documents
      │ run_workflow
      v
    background   runs that outlive their call: a thread per run, cancel = Ctrl-C

Installed with the optional extra `lokfile[mcp]`; without it, `lok mcp` says
so and exits 2. Nothing else in lok imports this wing but `lok mcp`.
"""

__all__ = ["background", "server", "tools"]
