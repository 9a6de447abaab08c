"""`lok mcp`: the real server as a subprocess, driven by the MCP SDK's own client.

Over stdio (`ClientSession` on `stdio_client`, which spawns `lok mcp`) and over
streamable HTTP (`lok mcp --http --port P`, then `streamable_http_client`),
against a loopback LLM server (tests/servers/llm.py) that counts the model calls.
Without the `mcp` package (the `lokfile[mcp]` extra) these tests skip, unless
LOK_REQUIRE_MCP=1 (CI installs the extra and sets it).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from lokfile.cli import main
from tests.lokrun import BUILTINS_OFF, REPO, db_rows, skip_unless_required, wait_until, write
from tests.procs import MARK_VAR, Lok, steps_of
from tests.servers.llm import LLMServer

if TYPE_CHECKING:
    from mcp import ClientSession
    from mcp.types import CallToolResult

TOOLS = [
    "list_workflows",
    "run_workflow",
    "run_status",
    "step_output",
    "list_runs",
    "cancel_run",
    "workflow_status",
    "ask",
    "doctor",
]
SECRET = "sk-lok-test-0123456789-do-not-show"

REVIEW = """
name = "review"
description = "Draft a note, then polish it"

[args.topic]
default = "cats"
description = "what the note is about"

[[steps]]
name = "draft"
backend = "llm"
prompt = "write about {{ arg.topic }}"

[[steps]]
name = "polish"
backend = "llm"
depends_on = ["draft"]
prompt = "polish: {{ steps.draft.output }}"
"""

# a run that waits for the test: its first step ends only once the file `go` exists
GATED = """
name = "gated"

[[steps]]
name = "wait"
shell = "while [ ! -e go ]; do sleep 0.05; done; echo opened"

[[steps]]
name = "answer"
backend = "llm"
depends_on = ["wait"]
prompt = "after {{ steps.wait.output }}"
"""

LONG = """
name = "long"

[[steps]]
name = "numbers"
shell = "seq 1 3000"
sources = ["lok.toml"]
"""


@pytest.fixture
def sdk() -> None:
    """The tests that drive a server need the SDK (its client, and `lok mcp` itself)."""
    try:
        import mcp  # noqa: F401
    except ImportError:
        skip_unless_required(
            "LOK_REQUIRE_MCP",
            "the MCP SDK is not installed (pip install -e '.[mcp]'); CI sets LOK_REQUIRE_MCP=1",
        )


@pytest.fixture
def server() -> Iterator[LLMServer]:
    with LLMServer() as srv:
        yield srv


@pytest.fixture
def project(tmp_path: Path, server: LLMServer, sdk: None) -> Path:
    root = tmp_path / "proj"
    (root / ".lok").mkdir(parents=True)
    write(
        root,
        "lok.toml",
        BUILTINS_OFF
        + f'[backends.llm]\ntype = "ollama"\nurl = "{server.url}"\nmodel = "llama3.2"\n\n'
        + f'[backends.keyed]\ntype = "anthropic"\nurl = "{server.url}"\n'
        + 'api_key_env = "LOK_TEST_KEY"\n',
    )
    write(root, ".lok/workflows/review.toml", REVIEW)
    write(root, ".lok/workflows/gated.toml", GATED)
    write(root, ".lok/workflows/long.toml", LONG)
    return root


def environment(root: Path, mark: str) -> dict[str, str]:
    return {
        **os.environ,
        "XDG_CONFIG_HOME": str(root.parent / "xdg"),
        "XDG_CACHE_HOME": str(root.parent / "cache"),
        "LOK_TEST_KEY": SECRET,
        MARK_VAR: mark,
    }


Body = Callable[["ClientSession"], Awaitable[None]]


def over_stdio(root: Path, mark: str, body: Body) -> None:
    """Spawn `lok -C ROOT mcp` through the SDK's stdio client and run `body` on a session."""
    import anyio
    from mcp import ClientSession, StdioServerParameters, stdio_client

    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "lokfile", "-C", str(root), "mcp"],
        env=environment(root, mark),
        cwd=str(root.parent),
    )

    async def session() -> None:
        with (root.parent / "server-stderr.txt").open("a") as errlog:
            async with (
                stdio_client(params, errlog=errlog) as (read, write_),
                ClientSession(read, write_) as s,
            ):
                await s.initialize()
                await body(s)

    anyio.run(session)


async def call(s: ClientSession, tool: str, **arguments: Any) -> CallToolResult:
    return await s.call_tool(tool, arguments)


def text(result: CallToolResult) -> str:
    return "\n".join(getattr(c, "text", "") for c in result.content)


def doc(result: CallToolResult) -> dict[str, Any]:
    """The structured content of a successful call."""
    assert not result.is_error, text(result)
    assert result.structured_content is not None
    return dict(result.structured_content)


def error_of(result: CallToolResult) -> str:
    """The `Error: …` / `Hint: …` text of a tool error."""
    assert result.is_error, text(result)
    return text(result)


def statuses(document: dict[str, Any]) -> dict[str, str]:
    return {s["name"]: s["status"] for s in document["steps"]}


# ---------------------------------------------------------------- over stdio


def test_tools_are_listed_and_list_workflows_gives_the_cli_document(
    project: Path, mark: str
) -> None:
    cli = json.loads(
        subprocess.run(
            [sys.executable, "-m", "lokfile", "workflow", "list", "--json"],
            cwd=project,
            capture_output=True,
            text=True,
            env=environment(project, mark),
            check=True,
        ).stdout
    )

    async def body(s: ClientSession) -> None:
        listed = await s.list_tools()
        assert sorted(t.name for t in listed.tools) == sorted(TOOLS)
        assert all(t.description for t in listed.tools)
        run = next(t for t in listed.tools if t.name == "run_workflow")
        assert run.input_schema["required"] == ["workflow"]
        assert {"args", "named", "wait_s", "force"} <= set(run.input_schema["properties"])
        result = await call(s, "list_workflows")
        assert doc(result) == cli
        review = {w["name"]: w for w in doc(result)["workflows"]}["review"]
        assert review["origin"] == "project"
        assert review["description"] == "Draft a note, then polish it"
        assert review["args"] == [
            {
                "name": "topic",
                "default": "cats",
                "description": "what the note is about",
                "required": False,
            }
        ]
        assert "review (project)" in text(result)

    over_stdio(project, mark, body)


def test_a_run_then_a_rerun_with_nothing_changed_calls_no_model(
    project: Path, server: LLMServer, mark: str
) -> None:
    async def body(s: ClientSession) -> None:
        notes: list[str] = []

        async def progress(progress: float, total: float | None, message: str | None) -> None:
            notes.append(f"{progress}/{total} {message}")

        first = await s.call_tool(
            "run_workflow", {"workflow": "review", "named": {"topic": "owls"}}, None, progress
        )
        outcome = doc(first)
        assert outcome["status"] == "succeeded"
        assert statuses(outcome) == {"draft": "ran", "polish": "ran"}
        polish = outcome["steps"][1]
        assert polish["output"] == "echo: polish: echo: write about owls"
        assert "run " in text(first) and "succeeded" in text(first)
        assert any("draft: ran" in n for n in notes), notes
        assert any("polish: ran" in n for n in notes), notes
        calls = len(server.model_calls())
        assert calls == 2
        again = doc(await call(s, "run_workflow", workflow="review", named={"topic": "owls"}))
        assert statuses(again) == {"draft": "reused", "polish": "reused"}
        assert again["run_id"] != outcome["run_id"]
        assert len(server.model_calls()) == calls  # the rerun asked nothing
        runs = doc(await call(s, "list_runs", limit=5))["runs"]
        assert [r["id"] for r in runs] == [again["run_id"], outcome["run_id"]]
        assert runs[0]["args"] == {"positional": [], "named": {"topic": "owls"}}
        forced = doc(
            await call(s, "run_workflow", workflow="review", force=True, named={"topic": "owls"})
        )
        assert statuses(forced) == {"draft": "ran", "polish": "ran"}
        assert len(server.model_calls()) == calls + 2

    over_stdio(project, mark, body)
    # the runs are in the history the CLI reads
    rows = db_rows(project, "SELECT status FROM runs ORDER BY started")
    assert [r[0] for r in rows] == ["succeeded"] * 3


def test_a_detached_run_is_followed_with_run_status_to_its_end(
    project: Path, server: LLMServer, mark: str
) -> None:
    async def body(s: ClientSession) -> None:
        started = doc(await call(s, "run_workflow", workflow="gated", wait_s=0))
        assert started["status"] == "running"
        rid = started["run_id"]
        assert f"run_status(run_id='{rid}')" in text(await call(s, "run_status", run_id=rid))
        assert wait_until(lambda: bool(steps_of(mark)), 30)  # the gate's shell is running
        meanwhile = doc(await call(s, "run_status", run_id=rid))
        assert meanwhile["status"] == "running" and meanwhile["steps_done"] == 0
        assert meanwhile["running"] == ["wait"]
        # the session is not blocked by the run: other tools answer
        assert doc(await call(s, "list_workflows"))["workflows"]
        (project / "go").touch()
        status: dict[str, Any] = meanwhile
        for _ in range(20):  # each call waits up to 30 s for the end
            status = doc(await call(s, "run_status", run_id=rid, wait_s=30))
            if status["status"] != "running":
                break
        assert status["status"] == "succeeded", status
        assert status["id"] == rid  # the `lok runs show --json` document
        assert statuses(status) == {"wait": "ran", "answer": "ran"}
        answer = doc(await call(s, "step_output", run_id=rid, step="answer"))
        assert answer["output"] == "echo: after opened"

    over_stdio(project, mark, body)
    assert len(server.model_calls()) == 1


def test_cancel_run_ends_the_run_as_ctrl_c_does(project: Path, mark: str) -> None:
    async def body(s: ClientSession) -> None:
        rid = doc(await call(s, "run_workflow", workflow="gated", wait_s=0))["run_id"]
        assert wait_until(lambda: bool(steps_of(mark)), 30)  # the step's shell is running
        cancelled = doc(await call(s, "cancel_run", run_id=rid))
        assert cancelled["cancelled"] is True
        assert cancelled["status"] == "interrupted"
        assert statuses(cancelled) == {"wait": "interrupted", "answer": "skipped"}
        assert wait_until(lambda: not steps_of(mark), 10), steps_of(mark)
        again = doc(await call(s, "cancel_run", run_id=rid))
        assert again["cancelled"] is False
        assert "already ended: interrupted" in text(await call(s, "cancel_run", run_id=rid))

    over_stdio(project, mark, body)
    assert db_rows(project, "SELECT status FROM runs") == [("interrupted",)]


def test_a_run_going_on_when_the_session_ends_is_recorded_as_interrupted(
    project: Path, mark: str
) -> None:
    async def body(s: ClientSession) -> None:
        doc(await call(s, "run_workflow", workflow="gated", wait_s=0))
        assert wait_until(lambda: bool(steps_of(mark)), 30)

    over_stdio(project, mark, body)  # the client closes the server's stdin
    assert wait_until(lambda: not steps_of(mark), 10), steps_of(mark)
    assert db_rows(project, "SELECT status FROM runs") == [("interrupted",)]


def test_long_outputs_are_cut_and_step_output_gives_the_whole_text(
    project: Path, mark: str
) -> None:
    whole = "\n".join(str(n) for n in range(1, 3001))  # the trailing newline is not kept

    async def body(s: ClientSession) -> None:
        outcome = doc(await call(s, "run_workflow", workflow="long"))
        step = outcome["steps"][0]
        assert len(step["output"]) < len(whole)
        assert whole.startswith(step["output"])
        rid = outcome["run_id"]
        assert step["output_cut"] == {
            "chars": len(whole),
            "shown": len(step["output"]),
            "full": f"step_output(run_id='{rid}', step='numbers')",
        }
        full = await call(s, "step_output", run_id=rid, step="numbers")
        assert doc(full)["output"] == whole
        assert text(full) == whole  # the text is the output itself
        latest = await call(s, "step_output", run_id="latest", step="numbers")
        assert doc(latest)["output"] == whole
        shown = doc(await call(s, "run_status", run_id=rid))
        assert shown["steps"][0]["output_cut"]["chars"] == len(whole)
        missing = error_of(await call(s, "step_output", run_id=rid, step="nope"))
        assert f"Error: run {rid} has no step 'nope'" in missing
        assert "Hint: its steps: numbers" in missing

    over_stdio(project, mark, body)


def test_workflow_status_says_fresh_or_stale_and_why_calling_nothing(
    project: Path, server: LLMServer, mark: str
) -> None:
    async def body(s: ClientSession) -> None:
        before = doc(await call(s, "workflow_status", workflow="review"))
        assert before == {
            "workflow": "review",
            "steps": [
                {"name": "draft", "fresh": False, "state": "stale", "reason": "never run"},
                {
                    "name": "polish",
                    "fresh": False,
                    "state": "stale",
                    "reason": "upstream draft will run",
                },
            ],
        }
        doc(await call(s, "run_workflow", workflow="review"))
        after = doc(await call(s, "workflow_status", workflow="review"))
        assert [st["state"] for st in after["steps"]] == ["fresh", "fresh"]
        other = doc(await call(s, "workflow_status", workflow="review", named={"topic": "dogs"}))
        assert other["steps"][0]["reason"] == "prompt changed"
        assert "draft: prompt changed" in text(
            await call(s, "workflow_status", workflow="review", named={"topic": "dogs"})
        )

    over_stdio(project, mark, body)
    assert len(server.model_calls()) == 2  # the run's two calls; status called nothing


def test_ask_is_cached_the_second_time_and_doctor_shows_no_secret(
    project: Path, server: LLMServer, mark: str
) -> None:
    async def body(s: ClientSession) -> None:
        first = doc(await call(s, "ask", prompt="What is lok?", backends=["llm"]))
        assert first["ok"] is True
        assert first["results"][0]["text"] == "echo: What is lok?"
        assert first["results"][0]["cached"] is False
        calls = len(server.model_calls())
        second = await call(s, "ask", prompt="What is lok?", backends=["llm"])
        assert doc(second)["results"][0]["cached"] is True
        assert "llm: answered (cached)" in text(second)
        assert len(server.model_calls()) == calls
        keyed = await call(s, "ask", prompt="<<fail:401>>", backends=["keyed"])  # echoes the key
        assert doc(keyed)["results"][0]["error"]["kind"] == "auth"
        doctor = await call(s, "doctor")
        health = {b["name"]: b for b in doc(doctor)["backends"]}
        assert health["llm"]["ready"] is True
        assert health["keyed"]["api_key_env"] == "LOK_TEST_KEY"
        assert health["keyed"]["key_set"] is True
        assert "ready: " in text(doctor)
        for result in (first, second, keyed, doctor):
            wire = result if isinstance(result, dict) else result.model_dump()
            assert SECRET not in json.dumps(wire)
        unknown = error_of(await call(s, "ask", prompt="hi", backends=["lmm"]))
        assert "Error: unknown backend 'lmm' (did you mean 'llm'?)" in unknown
        assert "Hint: configured backends:" in unknown

    over_stdio(project, mark, body)
    # the key did reach the backend that needs it, only never a reply
    assert any(SECRET in str(r.headers) for r in server.requests)


def test_bad_requests_are_tool_errors_with_the_cli_hint_and_the_server_keeps_serving(
    project: Path, tmp_path: Path, server: LLMServer, mark: str
) -> None:
    outside = write(
        tmp_path, "outside.toml", 'name = "outside"\n[[steps]]\nname = "x"\nshell = "touch PWNED"\n'
    )
    (project / ".lok" / "link.toml").symlink_to(outside)
    write(
        project, "tools/inside.toml", 'name = "inside"\n[[steps]]\nname = "x"\nshell = "echo in"\n'
    )
    write(project, "lok.toml.bak", "")

    async def body(s: ClientSession) -> None:
        unknown = error_of(await call(s, "run_workflow", workflow="reveiw"))
        assert "Error: workflow 'reveiw' not found (did you mean 'review'?)" in unknown
        assert "Hint: looked in" in unknown and "lok workflow list" in unknown
        assert doc(await call(s, "list_workflows"))["workflows"]  # still serving
        for path in (str(outside), "../outside.toml", ".lok/link.toml"):
            refused = error_of(await call(s, "run_workflow", workflow=path))
            assert "is outside the project" in refused, refused
            assert "Hint: name a workflow that list_workflows shows" in refused
            refused = error_of(await call(s, "workflow_status", workflow=path))
            assert "is outside the project" in refused
        assert not (project / "PWNED").exists() and not (tmp_path / "PWNED").exists()
        inside = doc(await call(s, "run_workflow", workflow="tools/inside.toml"))
        assert inside["steps"][0]["output"] == "in"
        not_listed = error_of(await call(s, "run_workflow", workflow="lok.toml.bak"))
        assert "Error:" in not_listed
        named = error_of(await call(s, "run_workflow", workflow="review", named={"topik": "x"}))
        assert "Error: workflow 'review' declares no argument 'topik'" in named
        assert "Hint: its arguments: topic" in named
        typed = await call(s, "run_workflow", workflow="review", wait_s="soon")
        assert typed.is_error
        no_run = error_of(await call(s, "run_status", run_id="zzz"))
        assert "Error:" in no_run and "Hint:" in no_run
        ok = doc(await call(s, "run_workflow", workflow="review"))
        assert ok["status"] == "succeeded"

    over_stdio(project, mark, body)
    assert len(server.model_calls()) == 2


# ------------------------------------------------------- over streamable HTTP


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    except OSError:
        return False
    return True


def test_over_streamable_http_a_rerun_calls_no_model(
    project: Path, server: LLMServer, mark: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import anyio
    from mcp import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    for key, value in environment(project, mark).items():
        monkeypatch.setenv(key, value)
    port = _free_port()
    lok = Lok(project.parent, mark, "-C", str(project), "mcp", "--http", "--port", str(port))
    try:
        assert wait_until(lambda: _accepts(port) or lok.proc.poll() is not None, 60), lok.err
        assert lok.proc.poll() is None, lok.err
        assert f"http://127.0.0.1:{port}/mcp" in lok.err

        async def session() -> None:
            url = f"http://127.0.0.1:{port}/mcp"
            async with (
                streamable_http_client(url) as (read, write_),
                ClientSession(read, write_) as s,
            ):
                await s.initialize()
                listed = await s.list_tools()
                assert sorted(t.name for t in listed.tools) == sorted(TOOLS)
                notes: list[str] = []

                async def progress(
                    progress: float, total: float | None, message: str | None
                ) -> None:
                    notes.append(str(message))

                first = await s.call_tool("run_workflow", {"workflow": "review"}, None, progress)
                assert statuses(doc(first)) == {"draft": "ran", "polish": "ran"}
                assert any("polish: ran" in n for n in notes), notes
                calls = len(server.model_calls())
                again = doc(await call(s, "run_workflow", workflow="review"))
                assert statuses(again) == {"draft": "reused", "polish": "reused"}
                assert len(server.model_calls()) == calls
                bad = error_of(await call(s, "run_workflow", workflow="/etc/passwd"))
                assert "is outside the project" in bad
                assert doc(await call(s, "doctor"))["ok"] is True

        anyio.run(session)
    finally:
        lok.proc.terminate()
        lok.proc.wait(timeout=30)
    assert lok.proc.returncode == 130, lok.err  # SIGTERM is Ctrl-C


def test_a_port_in_use_is_one_line_and_exit_2(project: Path, mark: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "lokfile",
                "-C",
                str(project),
                "mcp",
                "--http",
                "--port",
                str(port),
            ],
            capture_output=True,
            text=True,
            env=environment(project, mark),
            timeout=60,
        )
    assert proc.returncode == 2
    assert f"Error: cannot listen on 127.0.0.1:{port}" in proc.stderr
    assert "Hint: pick another port with --port N" in proc.stderr
    assert "Traceback" not in proc.stderr


# ------------------------------------------------------------ without the SDK, and docs


def test_without_the_sdk_lok_mcp_says_how_to_install_it_and_exits_2(tmp_path: Path) -> None:
    # `None` in sys.modules makes `import mcp` fail as if the package were absent
    code = "import sys; sys.modules['mcp'] = None; from lokfile.cli import main; main(['mcp'])"
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.splitlines()
    assert lines[0].startswith("Error: lok mcp needs the MCP Python SDK (mcp>=2,<3)")
    assert lines[1] == "Hint: pip install 'lokfile[mcp]' (or: pip install 'mcp>=2,<3')"
    assert len(lines) == 2


def test_port_goes_with_http(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["mcp", "--port", "9000"])
    assert exit_info.value.code == 2
    assert "Error: --port goes with --http" in capsys.readouterr().err


def test_the_readme_and_lok_mcp_help_name_every_tool_and_each_agent(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        main(["mcp", "--help"])
    help_text = capsys.readouterr().out
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("## Use lok from your agent") :]
    section = section[: section.index("\n## ", 4)] if "\n## " in section[4:] else section
    for tool in TOOLS:
        assert f"`{tool}(" in section, tool  # its row in the table of tools
        assert tool in help_text, tool
    for line in (
        "claude mcp add lok -- lok mcp",
        "[mcp_servers.lok]",
        '"mcpServers"',
        ".cursor/mcp.json",
        "settings.json",
        "lok mcp --http",
    ):
        assert line in section, line
        assert line in help_text, line
