"""`type = "command"` and the subprocess runner under it: real processes, real files."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from lokfile.backends import create
from lokfile.backends.base import BackendError, ErrorKind, Request
from lokfile.model import BackendConfig
from tests.lokrun import wait_until

PY = sys.executable


def command(cmd: str, *args: str, **kw: Any) -> Any:
    return create(BackendConfig(name="tool", type="command", command=cmd, args=args, **kw))


def ask(b: Any, prompt: str, timeout: float = 10.0, cwd: str = ".") -> str:
    text: str = b.query(Request(prompt=prompt, cwd=cwd, timeout_s=timeout)).text
    return text


def test_a_one_megabyte_prompt_reaches_the_command_on_stdin_intact() -> None:
    prompt = "x" * (1024 * 1024 - 1) + "\n"
    assert ask(command("wc", "-c"), prompt) == str(1024 * 1024)


def test_the_prompt_placeholder_is_one_argv_element_never_a_shell_string(tmp_path: Path) -> None:
    hostile = 'it\'s $(touch pwned) `rm -rf x` ; echo "quoted" && exit 3'
    script = "import sys, json; print(json.dumps(sys.argv[1:]))"
    out = ask(command(PY, "-c", script, "--text={prompt}", "tail"), hostile, cwd=str(tmp_path))
    assert out == '["--text=' + hostile.replace('"', '\\"') + '", "tail"]'
    assert not (tmp_path / "pwned").exists()


def test_the_prompt_file_placeholder_hands_over_a_file_that_is_removed_afterwards() -> None:
    script = "import sys; p = sys.argv[1]; print(p); print(open(p).read())"
    out = ask(command(PY, "-c", script, "{prompt_file}"), "from a file\nline two")
    path, _, content = out.partition("\n")
    assert content == "from a file\nline two"
    assert not os.path.exists(path)


def test_prompt_via_arg_appends_the_prompt_when_there_is_no_placeholder() -> None:
    b = command(PY, "-c", "import sys; print(sys.argv[-1])", extra={"prompt_via": "arg"})
    assert ask(b, "appended") == "appended"


def test_skip_lines_drops_a_banner() -> None:
    b = command("sh", "-c", "echo banner; echo; cat", skip_lines=2)
    assert ask(b, "the answer") == "the answer"


def test_model_placeholder_takes_the_backend_model() -> None:
    b = command("echo", "{model}", model="tiny-1")
    assert ask(b, "ignored on stdin") == "tiny-1"


def test_a_non_zero_exit_fails_with_the_first_line_of_stderr() -> None:
    b = command("sh", "-c", "echo 'boom: disk full' >&2; echo more >&2; exit 4")
    with pytest.raises(BackendError) as info:
        ask(b, "x")
    assert info.value.kind is ErrorKind.FAILED
    assert "code 4" in info.value.message
    assert "boom: disk full" in info.value.summary()
    assert "more" not in info.value.summary()


def test_a_missing_program_is_not_installed() -> None:
    with pytest.raises(BackendError) as info:
        ask(command("lok-no-such-program-xyz"), "x")
    assert info.value.kind is ErrorKind.NOT_INSTALLED
    assert "lok-no-such-program-xyz" in info.value.message
    health = command("lok-no-such-program-xyz").health()
    assert not health.ready and not health.found


def test_a_prompt_too_long_for_argv_says_to_use_stdin() -> None:
    b = command("echo", "{prompt}")
    with pytest.raises(BackendError) as info:
        ask(b, "y" * (1024 * 1024))
    assert "stdin" in info.value.message


def test_the_deadline_kills_the_whole_process_group(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    # a child that ignores SIGTERM and a grandchild: both must be gone after the deadline
    script = (
        f"trap '' TERM; sleep 60 & echo $! > {pids}; echo $$ >> {pids}; "
        "while true; do sleep 0.1; done"
    )
    b = command("sh", "-c", script)
    started = time.monotonic()
    with pytest.raises(BackendError) as info:
        ask(b, "x", timeout=0.5)
    assert info.value.kind is ErrorKind.TIMEOUT
    assert time.monotonic() - started < 0.5 + 2.5
    written = pids.read_text().split()
    assert len(written) == 2, written
    # SIGKILL is sent before query returns; the kernel reaps the processes a moment later
    for pid in written:

        def gone(p: int = int(pid)) -> bool:
            return not _alive(p)

        assert wait_until(gone, timeout=5), f"process {pid} survived the deadline"


def test_env_table_reaches_the_command_and_nesting_markers_do_not(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CLAUDECODE", "1")
    script = "import os; print(os.environ.get('LOK_X'), os.environ.get('CLAUDECODE'))"
    b = command(PY, "-c", script, extra={"env": {"LOK_X": "yes"}})
    assert ask(b, "") == "yes None"


def test_health_probe_runs_the_command_once(tmp_path: Path) -> None:
    log = tmp_path / "calls"
    b = command("sh", "-c", f"cat >> {log}; echo ok")
    health = b.health(probe=True)
    assert health.ready
    assert "probe answered" in health.detail
    assert log.read_text().count("ok") == 1


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead for our purposes
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False
