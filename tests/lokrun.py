"""Helpers for tests that drive the real `lok` executable in a temporary project."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import click
import pytest

from lokfile.cli import main

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
# The original tool's own test workflows: on the team's machines and in CI (a `shared/`
# folder beside the clone), not in the repository. Tests of those files go through
# `original_fixtures()`, which skips where they are absent.
FIXTURES = SHARED / "fixtures" / "lok"


def _builtins_off() -> str:
    from lokfile.config.layers import BUILTIN

    return "".join(f"[backends.{n}]\nenabled = false\n\n" for n in sorted(BUILTIN["backends"]))


# lok.toml text that switches off every built-in backend (the CLIs, Ollama, the local model),
# so a test's own backends are the only ones `auto` and `lok ask` can see
BUILTINS_OFF = _builtins_off()


def lok(
    cwd: Path,
    *args: str,
    timeout: float = 120,
    env: dict[str, str] | None = None,
    check: bool = False,
) -> subprocess.CompletedProcess[str]:
    """Run `python -m lokfile ARGS` in `cwd` and capture stdout and stderr apart."""
    full_env = {**os.environ, **(env or {})}
    proc = subprocess.run(
        [sys.executable, "-m", "lokfile", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"lok {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        )
    return proc


def write(root: Path, rel: str, text: str) -> Path:
    """Write a dedented file under root."""
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def run_json(cwd: Path, *args: str, **kw: Any) -> dict[str, Any]:
    """`lok run --json …` parsed (the exit code is not checked)."""
    proc = lok(cwd, "run", "--json", *args, **kw)
    try:
        doc: dict[str, Any] = json.loads(proc.stdout)
    except json.JSONDecodeError as exc:
        raise AssertionError(
            f"not JSON (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
        ) from exc
    return doc


def statuses(doc: dict[str, Any]) -> dict[str, str]:
    return {s["name"]: s["status"] for s in doc["steps"]}


def db_rows(root: Path, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(root / ".lok" / "lok.db")
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


@click.command(context_settings={"ignore_unknown_options": True}, add_help_option=False)
@click.argument("argv", nargs=-1, type=click.UNPROCESSED)
def entry(argv: tuple[str, ...]) -> None:
    """The real `lok` entry point (Error:/Hint: edge, exit codes), for click's CliRunner."""
    main(list(argv))


GH_BIN = REPO / "tests" / "bin"


class StubWorld:
    """A stub `gh` on PATH with its own data folder, a call log for test backends, and
    git identities: the shared base of the end-to-end worlds."""

    def __init__(self, root: Path, base: Path) -> None:
        self.root = root
        self.log = base / "calls.jsonl"
        self.gh_dir = base / "gh"
        self.gh_dir.mkdir()
        self.env = {
            "PATH": f"{GH_BIN}{os.pathsep}{os.environ['PATH']}",
            "GH_STUB_DIR": str(self.gh_dir),
            "XDG_CONFIG_HOME": str(base / "xdg"),
            "GIT_AUTHOR_NAME": "t",
            "GIT_AUTHOR_EMAIL": "t@example.com",
            "GIT_COMMITTER_NAME": "t",
            "GIT_COMMITTER_EMAIL": "t@example.com",
        }

    def git(self, *args: str, cwd: Path | None = None) -> str:
        """Run git in the world (or `cwd`); its stdout."""
        return subprocess.run(
            ["git", *args],
            cwd=cwd or self.root,
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, **self.env},
        ).stdout.strip()

    def calls(self) -> list[dict[str, Any]]:
        """Every backend call the test backends logged."""
        return read_jsonl(self.log)

    def gh_calls(self) -> list[list[str]]:
        """The argv of every `gh` call."""
        return [call["argv"] for call in read_jsonl(self.gh_dir / "calls.jsonl")]

    def gh_data(self) -> dict[str, Any]:
        """The stub gh's world, as it is now."""
        data: dict[str, Any] = json.loads((self.gh_dir / "data.json").read_text())
        return data


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The JSON lines of a log file ([] when it does not exist yet)."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def wait_until(condition: Callable[[], bool], timeout: float = 10.0, every: float = 0.02) -> bool:
    """Poll `condition` until it holds or `timeout` seconds pass; whether it held.

    For what the kernel or another process settles a moment later (a killed process
    being reaped, a file being written): assert on the result, never sleep-and-hope.
    """
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(every)


def original_fixtures() -> Path:
    """The folder of the original's test workflows; the test skips when it is absent
    (a plain clone), or fails when LOK_REQUIRE_SHARED_FIXTURES=1 (CI has them)."""
    if sorted(FIXTURES.glob("*.toml")):
        return FIXTURES
    skip_unless_required(
        "LOK_REQUIRE_SHARED_FIXTURES",
        f"the original's test workflows are not beside this clone ({FIXTURES}); "
        "they are checked where they exist (CI sets LOK_REQUIRE_SHARED_FIXTURES=1)",
    )


def skip_unless_required(variable: str, reason: str) -> NoReturn:
    """Skip the test for `reason`, or fail it when `variable` is 1 (CI, where what is
    missing must be there)."""
    if os.environ.get(variable) == "1":
        pytest.fail(reason)
    pytest.skip(reason)
