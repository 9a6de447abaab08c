"""`lok mcp`: serve this project's workflows to coding agents (lokfile/mcp/)."""

from __future__ import annotations

import click

from lokfile.cli import Session

DEFAULT_PORT = 8765
INSTALL_HINT = "pip install 'lokfile[mcp]' (or: pip install 'mcp>=2,<3')"


@click.command()
@click.option("--http", is_flag=True, help="Serve streamable HTTP on 127.0.0.1 instead of stdio.")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=None,
    metavar="N",
    help=f"With --http: the port (default {DEFAULT_PORT}; 0 takes a free one).",
)
@click.pass_obj
def mcp(session: Session, http: bool, port: int | None) -> None:
    """Serve lok to coding agents over the Model Context Protocol.

    Over stdio by default (the agent starts `lok mcp` itself, in its project,
    or `lok -C DIR mcp`); with --http, streamable HTTP at
    http://127.0.0.1:PORT/mcp (localhost only). Needs the optional extra:
    pip install 'lokfile[mcp]'.

    \b
    Register it (the README shows each file in full):
      Claude Code  claude mcp add lok -- lok mcp   (--scope project writes .mcp.json)
      Codex        ~/.codex/config.toml: [mcp_servers.lok] command = "lok", args = ["mcp"]
      Gemini CLI   ~/.gemini/settings.json: "mcpServers": {"lok": {"command": "lok",
                   "args": ["mcp"]}}
      Cursor       .cursor/mcp.json: the same "mcpServers" entry
      over HTTP    lok mcp --http, then give the agent http://127.0.0.1:8765/mcp

    \b
    Tools (each returns the document of the matching --json command):
      list_workflows    what can run here, with descriptions and arguments
      run_workflow      run one as `lok run` does; past wait_s it goes on in the background
      run_status        follow a run; once it ended, `lok runs show --json`
      step_output       one step's whole output (run documents cut long ones)
      list_runs         the newest runs
      cancel_run        stop a run, as Ctrl-C does (recorded as interrupted)
      workflow_status   each step fresh or stale, and why (calls nothing)
      ask               one prompt to several backends, cached
      doctor            which backends can answer now

    Only workflows `lok workflow list` shows, or .toml files inside the
    project, can run; a bad request is a tool error with lok's message and
    hint, and the server keeps serving.
    """
    from lokfile.errors import UsageError
    from lokfile.project import find_root

    if port is not None and not http:
        raise UsageError("--port goes with --http", "lok mcp --http --port N")
    try:
        from lokfile.mcp import server
    except ImportError as exc:
        raise UsageError(
            f"lok mcp needs the MCP Python SDK (mcp>=2,<3), which is not installed ({exc})",
            INSTALL_HINT,
        ) from exc
    from pathlib import Path

    root = find_root(session.directory.absolute() if session.directory else Path.cwd())
    server.serve(root, session.config_file, http, DEFAULT_PORT if port is None else port)
