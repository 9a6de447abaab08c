"""The MCP server: lok's tools on the official SDK (`mcp>=2,<3`, its `MCPServer`).

The only module of lok that imports the SDK. Each tool is a thin async face
over lokfile.mcp.tools: the work runs in a worker thread (the event loop
never blocks, so a long run or a slow backend never stalls the session), and
its Reply becomes a CallToolResult — the summary as text, the document as
structured content and, for clients that read only text, as JSON text too.
A LokError becomes a tool error carrying the CLI's `Error:` / `Hint:` lines;
anything unexpected becomes one too: the server keeps serving.

    serve(root, config, http, port)
      ├── stdio: the SDK's stdio transport (fd 1 is the wire; stray output goes to stderr)
      └── http:  the SDK's streamable-HTTP app under uvicorn, on 127.0.0.1 only
    when the session ends (stdin closed, Ctrl-C, SIGTERM): running runs are
    cancelled and recorded as interrupted before the process exits
"""

import functools
import json
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import anyio
import anyio.to_thread
from mcp.server.mcpserver import Context, MCPServer
from mcp.types import CallToolResult, ContentBlock, TextContent, ToolAnnotations
from pydantic import Field

from lokfile import __version__
from lokfile.errors import LokError, UsageError
from lokfile.mcp.background import LiveRun
from lokfile.mcp.tools import Reply, Tools

HOST = "127.0.0.1"
PATH = "/mcp"
FOLLOW_STEP_S = 1.0  # a waiting tool looks at its run at least this often

INSTRUCTIONS = """\
lok runs multi-LLM workflows like make: every step's output is cached by what went
into it, so a rerun only pays for the steps whose inputs changed, and a rerun with
nothing changed calls no model at all. Start with list_workflows; run_workflow runs
one (a long run continues in the background: follow it with run_status); step_output
gives a step's whole output; workflow_status says what would rerun and why, for free;
ask puts one prompt to several backends (cached); doctor says which backends answer."""

Ctx = Context[Any, Any]
WorkflowArg = Annotated[
    str,
    Field(
        description="A workflow name as list_workflows shows it, or the path of a .toml "
        "file inside the project (relative to the project root)."
    ),
]
ArgsArg = Annotated[
    list[str],
    Field(default_factory=list, description="Positional arguments ({{ arg.1 }}, …)."),
]
NamedArg = Annotated[
    dict[str, str],
    Field(
        default_factory=dict,
        description="Values for the workflow's declared arguments, by name "
        "(list_workflows lists them).",
    ),
]
RunIdArg = Annotated[
    str,
    Field(description="A run id (or a unique prefix of one), latest, or latest~N."),
]


def build(tools: Tools) -> MCPServer[Any]:
    """The server with every tool registered over `tools`."""
    server: MCPServer[Any] = MCPServer(
        "lok", version=__version__, instructions=INSTRUCTIONS, log_level="WARNING"
    )
    reading = ToolAnnotations(read_only_hint=True, open_world_hint=False)

    @server.tool(annotations=reading)
    async def list_workflows() -> CallToolResult:
        """Every workflow lok can run here: project (.lok/workflows), user and built-in,
        with its description, number of steps, declared arguments, and the error of
        one that does not load. The same document as `lok workflow list --json`."""
        return await _answer(tools.list_workflows)

    @server.tool(annotations=ToolAnnotations(destructive_hint=False, open_world_hint=True))
    async def run_workflow(
        ctx: Ctx,
        workflow: WorkflowArg,
        args: ArgsArg,
        named: NamedArg,
        wait_s: Annotated[
            float,
            Field(ge=0, le=3600, description="Wait this long for the run to end."),
        ] = 60,
        force: Annotated[
            bool, Field(description="Rerun every step, fresh or not (lok run --force).")
        ] = False,
    ) -> CallToolResult:
        """Run a workflow as `lok run` does: only the steps whose inputs changed run, the
        others reuse their stored results, and the run is recorded. If it ends within
        wait_s, returns the outcome (the `lok run --json` document: each step's status,
        reason and output, long outputs cut with a pointer to step_output); otherwise
        returns {run_id, status: "running"} at once and the run goes on in the background
        (follow it with run_status, stop it with cancel_run). Reports progress per step."""
        try:
            live = await _in_thread(tools.start_run, workflow, args, named, force)
        except LokError as exc:
            return _error(exc)
        except Exception as exc:
            return _error(_internal(exc))
        await _follow(live, wait_s, ctx)
        return await _answer(tools.live_reply, live)

    @server.tool(annotations=reading)
    async def run_status(
        ctx: Ctx,
        run_id: RunIdArg,
        wait_s: Annotated[
            float,
            Field(ge=0, le=3600, description="Wait up to this long for a running run to end."),
        ] = 0,
    ) -> CallToolResult:
        """A run's status and steps: for a run still going on, the steps done so far and
        those running; for one that ended, the `lok runs show RUN --json` document (long
        outputs cut with a pointer to step_output)."""
        try:
            row, live = await _in_thread(tools.lookup, run_id)
        except LokError as exc:
            return _error(exc)
        except Exception as exc:
            return _error(_internal(exc))
        if live is not None:
            await _follow(live, wait_s, ctx)
            if not live.done:
                return await _answer(tools.live_reply, live)
        return await _answer(tools.run_status, row["id"])

    @server.tool(annotations=reading)
    async def step_output(
        run_id: RunIdArg,
        step: Annotated[str, Field(description="The step's name.")],
        unit: Annotated[
            str | None,
            Field(
                description="One unit of the step: a backend's own answer in a multi-backend "
                "step, or a for_each item (their names are in run_status's units)."
            ),
        ] = None,
    ) -> CallToolResult:
        """The whole output of one step of a run (run documents cut long outputs)."""
        return await _answer(tools.step_output, run_id, step, unit)

    @server.tool(annotations=reading)
    async def list_runs(
        limit: Annotated[int, Field(ge=1, le=1000, description="How many runs.")] = 20,
        workflow: Annotated[
            str | None, Field(description="Only the runs of this workflow.")
        ] = None,
    ) -> CallToolResult:
        """The newest runs, newest first: id, workflow, status, counts, arguments (the
        `lok runs list --json` document)."""
        return await _answer(tools.list_runs, limit, workflow)

    @server.tool(annotations=ToolAnnotations(destructive_hint=False, idempotent_hint=True))
    async def cancel_run(run_id: RunIdArg) -> CallToolResult:
        """Stop a run this server started, as Ctrl-C stops `lok run`: its running steps are
        ended, and it is recorded as interrupted with every step that finished (a later
        run_workflow reuses them). Returns the run's record."""
        return await _answer(tools.cancel_run, run_id)

    @server.tool(annotations=reading)
    async def workflow_status(
        workflow: WorkflowArg, args: ArgsArg, named: NamedArg
    ) -> CallToolResult:
        """Each step of a workflow fresh (its stored result would be reused) or stale (it
        would run), and why: `prompt changed`, `source changed: path`, `never run`, …
        Calls no model and records nothing (the `lok status --json` document)."""
        return await _answer(tools.workflow_status, workflow, args, named)

    @server.tool(annotations=ToolAnnotations(read_only_hint=False, open_world_hint=True))
    async def ask(
        prompt: Annotated[str, Field(description="The prompt.")],
        backends: Annotated[
            list[str],
            Field(
                default_factory=list,
                description="Backend names, in order (default: every backend that can "
                "answer now; doctor lists them).",
            ),
        ],
    ) -> CallToolResult:
        """Put one prompt to several backends at once, as `lok ask` does: each answer is
        cached by prompt and backend, so asking again is free (`cached: true`). The
        `lok ask --json` document."""
        return await _answer(tools.ask, prompt, backends)

    @server.tool(annotations=reading)
    async def doctor() -> CallToolResult:
        """Which configured backends can answer now (CLI installed, server reachable, model
        present, key variable set — never the key), with versions: the `lok doctor --json`
        document."""
        return await _answer(tools.doctor)

    return server


async def _in_thread(fn: Callable[..., Any], *args: Any) -> Any:
    return await anyio.to_thread.run_sync(functools.partial(fn, *args))


async def _answer(fn: Callable[..., Reply], *args: Any) -> CallToolResult:
    """Run a tool body in a worker thread and turn what it gives (or raises) into a result."""
    try:
        reply: Reply = await _in_thread(fn, *args)
    except LokError as exc:
        return _error(exc)
    except Exception as exc:  # a bug in a tool is that call's error, not the server's end
        return _error(_internal(exc))
    content: list[ContentBlock] = [TextContent(type="text", text=reply.summary)]
    if reply.echo:
        text = json.dumps(reply.document, indent=1, ensure_ascii=False)
        content.append(TextContent(type="text", text=text))
    return CallToolResult(content=content, structured_content=reply.document)


def _internal(exc: Exception) -> LokError:
    return LokError(
        f"internal error: {type(exc).__name__}: {exc}",
        "the server keeps serving; please report it (`lok --debug` shows a traceback)",
    )


def _error(exc: LokError) -> CallToolResult:
    """A tool error with the CLI's report: `Error: …` then `Hint: …`."""
    doc = {"error": exc.message, "hint": exc.hint, "exit_code": exc.exit_code}
    text = "\n".join(exc.lines())
    return CallToolResult(
        content=[TextContent(type="text", text=text)], structured_content=doc, is_error=True
    )


async def _follow(live: LiveRun, wait_s: float, ctx: Ctx) -> None:
    """Wait up to `wait_s` for the run to end, reporting each finished step as progress."""
    deadline = anyio.current_time() + wait_s
    seen = 0
    await ctx.report_progress(0, live.steps, f"run {live.run_id} of {live.workflow} started")
    while True:
        for event in live.events_since(seen):
            seen += 1
            note = f"{event['name']}: {event['status']}"
            if event.get("reason"):
                note += f" ({event['reason']})"
            await ctx.report_progress(seen, live.steps, note)
        left = deadline - anyio.current_time()
        if live.done or left <= 0:
            return
        await _in_thread(live.wait, seen, min(left, FOLLOW_STEP_S))


def serve(root: Path, config_file: Path | None, http: bool, port: int) -> None:
    """Serve the project at `root` until the client goes (stdio) or Ctrl-C (HTTP)."""
    tools = Tools(root, config_file)
    server = build(tools)
    try:
        if http:
            sock = _bind(port)
            where = f"http://{HOST}:{sock.getsockname()[1]}{PATH}"
            print(f"lok mcp: serving {root} at {where} (Ctrl-C stops)", file=sys.stderr)
            anyio.run(_serve_http, server, sock)
        else:
            print(f"lok mcp: serving {root} over stdio", file=sys.stderr)
            anyio.run(server.run_stdio_async)
    finally:
        tools.background.shutdown()


def _bind(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((HOST, port))
    except OSError as exc:
        sock.close()
        raise UsageError(
            f"cannot listen on {HOST}:{port}: {exc.strerror or exc}",
            "pick another port with --port N (--port 0 takes a free one)",
        ) from exc
    sock.listen(128)
    return sock


async def _serve_http(server: MCPServer[Any], sock: socket.socket) -> None:
    import uvicorn

    app = server.streamable_http_app(streamable_http_path=PATH, host=HOST)
    config = uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=2)
    await uvicorn.Server(config).serve(sockets=[sock])
