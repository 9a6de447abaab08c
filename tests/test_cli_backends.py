"""`lok ask`, `lok doctor` and `lok backends`, against real loopback servers."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from tests.lokrun import BUILTINS_OFF, entry
from tests.servers.llm import LLMServer

PLANTED = "sk-planted-secret-7f3a9c"
GHOST = '[backends.ghost]\ntype = "command"\ncommand = "lok-missing-tool-xyz"\n'  # not installed
UPPER = '[backends.upper]\ntype = "command"\ncommand = "tr"\nargs = ["a-z", "A-Z"]\n'


@pytest.fixture
def server() -> Iterator[LLMServer]:
    with LLMServer() as srv:
        yield srv


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "proj"
    root.mkdir()
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))  # no user config
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.chdir(root)
    return root


def write_config(root: Path, body: str) -> None:
    (root / "lok.toml").write_text(BUILTINS_OFF + body)


def http_backends(url: str, *names: str, kind: str = "openai", extra: str = "") -> str:
    return "".join(f'[backends.{n}]\ntype = "{kind}"\nurl = "{url}"\n{extra}\n' for n in names)



def lok(*args: str) -> Result:
    return CliRunner().invoke(entry, list(args))


def test_three_slow_backends_answer_together_and_a_repeat_comes_from_the_store(
    server: LLMServer, project: Path
) -> None:
    server.latency = 1.0
    write_config(project, http_backends(server.url, "alpha", "beta", "gamma"))
    started = time.monotonic()
    first = lok("ask", "What is 2+2?")
    elapsed = time.monotonic() - started
    assert first.exit_code == 0, first.stderr
    assert elapsed < 2.0
    assert len(server.model_calls()) == 3
    assert (
        first.stdout
        == "".join(f"\n=== {n} ===\n\necho: What is 2+2?\n" for n in ("alpha", "beta", "gamma"))
        + "\n"
    )

    started = time.monotonic()
    second = lok("ask", "What is 2+2?")
    assert second.exit_code == 0
    assert len(server.model_calls()) == 3  # no new request
    assert time.monotonic() - started < 0.9
    assert second.stdout.count("(cached)") == 3
    assert "echo: What is 2+2?" in second.stdout


def test_results_follow_the_order_of_the_b_list_with_names_trimmed(
    server: LLMServer, project: Path
) -> None:
    write_config(project, http_backends(server.url, "alpha", "beta", "gamma"))
    result = lok("ask", "-b", "gamma , alpha", "hi")
    assert result.exit_code == 0
    assert result.stdout.index("=== gamma ===") < result.stdout.index("=== alpha ===")
    assert "=== beta ===" not in result.stdout


def _waiting_pair(root: Path, patience_s: int) -> str:
    """Backends `first` and `second`: `first` answers "together" once `second` has started
    (polling for its marker file for up to `patience_s`), else "alone"."""
    marker = root / "second.started"
    wait = (
        f"for i in $(seq {patience_s * 10}); do [ -e '{marker}' ] && {{ echo together; exit 0; }}; "
        "sleep 0.1; done; echo alone"
    )
    return (
        f'[backends.first]\ntype = "command"\ncommand = "sh"\nargs = ["-c", "{wait}"]\n'
        f'[backends.second]\ntype = "command"\ncommand = "sh"\n'
        f'args = ["-c", "touch \'{marker}\'; echo second"]\n'
    )


def test_ask_queries_the_backends_together_by_default(project: Path) -> None:
    write_config(project, _waiting_pair(project, patience_s=30))
    result = lok("ask", "--json", "-b", "first,second", "hi")
    assert result.exit_code == 0, result.stderr
    assert [r["text"] for r in json.loads(result.stdout)["results"]] == ["together", "second"]


def test_parallel_false_asks_the_backends_one_after_another_in_order(project: Path) -> None:
    write_config(project, "[defaults]\nparallel = false\n" + _waiting_pair(project, patience_s=2))
    result = lok("ask", "--json", "-b", "first,second", "hi")
    assert result.exit_code == 0, result.stderr
    assert [r["text"] for r in json.loads(result.stdout)["results"]] == ["alone", "second"]


def test_an_unknown_backend_name_is_bad_input_with_the_configured_names(
    server: LLMServer, project: Path
) -> None:
    write_config(project, http_backends(server.url, "alpha", "beta"))
    result = lok("ask", "-b", "alpah", "hi")
    assert result.exit_code == 2
    assert result.stdout == ""
    assert "Error: unknown backend 'alpah' (did you mean 'alpha'?)" in result.stderr
    assert "Hint: configured backends: alpha, beta," in result.stderr
    assert server.model_calls() == []


def test_a_failed_backend_is_summarised_and_never_cached(server: LLMServer, project: Path) -> None:
    write_config(
        project,
        http_backends(server.url, "good")
        + (
            '[backends.limited]\ntype = "command"\ncommand = "sh"\n'
            'args = ["-c", "echo \'HTTP 429: slow down\' >&2; exit 1"]\n'
        ),
    )
    first = lok("ask", "question")
    assert first.exit_code == 0
    assert "=== limited ===\n\nError: " in first.stdout
    assert "HTTP 429: slow down" in first.stdout
    second = lok("ask", "question")
    assert "=== good === (cached)" in second.stdout
    assert "=== limited === (cached)" not in second.stdout
    assert "HTTP 429: slow down" in second.stdout


def test_every_backend_failing_exits_1(server: LLMServer, project: Path) -> None:
    write_config(project, http_backends(server.url, "alpha", "beta"))
    result = lok("ask", "<<fail:503>>")
    assert result.exit_code == 1
    assert result.stdout.count("no capacity available") == 2


def test_json_output_is_one_document_with_cached_flags(server: LLMServer, project: Path) -> None:
    write_config(project, http_backends(server.url, "alpha"))
    lok("ask", "--json", "hello")
    result = lok("ask", "--json", "hello")
    doc = json.loads(result.stdout)
    assert doc["ok"] is True
    assert doc["results"] == [
        {
            "backend": "alpha",
            "ok": True,
            "text": "echo: hello",
            "cached": True,
            "model": None,
            "elapsed_ms": 0,
            "error": None,
        }
    ]


def test_a_planted_api_key_is_nowhere_under_dot_lok(
    server: LLMServer, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOK_PLANTED_KEY", PLANTED)
    body = http_backends(
        server.url, "ant", kind="anthropic", extra='api_key_env = "LOK_PLANTED_KEY"'
    )
    body += http_backends(server.url, "oai", extra='api_key_env = "LOK_PLANTED_KEY"')
    write_config(project, body)
    ok = lok("ask", "--json", "keep my secret")
    assert ok.exit_code == 0
    calls = server.model_calls()
    assert (
        calls[0].headers.get("x-api-key") == PLANTED or calls[1].headers.get("x-api-key") == PLANTED
    )
    rejected = lok("ask", "-b", "ant", "<<fail:401>>")  # the server echoes the key back
    assert PLANTED not in rejected.stdout + rejected.stderr
    files = [p for p in (project / ".lok").rglob("*") if p.is_file()]
    assert any(p.name == "lok.db" for p in files)
    for path in files:
        assert PLANTED.encode() not in path.read_bytes(), f"key leaked into {path}"


def test_the_cache_does_not_depend_on_the_directory_asked_from(
    server: LLMServer, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_config(project, http_backends(server.url, "alpha"))
    assert lok("ask", "same question").exit_code == 0
    sub = project / "deep" / "er"
    sub.mkdir(parents=True)
    monkeypatch.chdir(sub)
    result = lok("ask", "same question")
    assert "(cached)" in result.stdout
    assert len(server.model_calls()) == 1


def test_no_cache_asks_every_time_and_expired_entries_are_asked_again(
    server: LLMServer, project: Path
) -> None:
    write_config(project, http_backends(server.url, "alpha") + "[cache]\nttl_hours = 1\n")
    lok("ask", "q")
    lok("ask", "--no-cache", "q")
    assert len(server.model_calls()) == 2
    assert "(cached)" in lok("ask", "q").stdout
    with sqlite3.connect(project / ".lok" / "lok.db") as db:
        db.execute("UPDATE ask_cache SET created = created - 7200")
    result = lok("ask", "q")
    assert "(cached)" not in result.stdout
    assert len(server.model_calls()) == 3


def test_without_b_only_the_backends_that_can_answer_are_asked(
    server: LLMServer, project: Path
) -> None:
    down = '[backends.down]\ntype = "ollama"\nurl = "http://127.0.0.1:9"\n'
    write_config(project, http_backends(server.url, "alpha") + GHOST + down)
    result = lok("ask", "hi")
    assert result.exit_code == 0
    assert "=== ghost ===" not in result.stdout and "=== down ===" not in result.stdout
    assert "(not ready, not asked: down, ghost; `lok doctor` says why)" in result.stderr
    skipped = json.loads(lok("ask", "--json", "hi").stdout)["skipped"]
    assert [s["backend"] for s in skipped] == ["down", "ghost"]
    assert "not found on PATH" in skipped[1]["summary"]
    named = lok("ask", "-b", "ghost", "hi")
    assert named.exit_code == 1
    assert "=== ghost ===\n\nError: not installed" in named.stdout


def test_ask_runs_command_backends_in_the_d_directory(project: Path, tmp_path: Path) -> None:
    write_config(project, '[backends.pwd]\ntype = "command"\ncommand = "pwd"\n')
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = lok("ask", "--no-cache", "-d", str(elsewhere), "where?")
    assert f"=== pwd ===\n\n{elsewhere}\n" in result.stdout


def test_lok_ask_as_a_real_process_prints_blocks_and_exit_code(project: Path) -> None:
    write_config(project, UPPER)
    lok_bin = Path(sys.executable).with_name("lok")
    done = subprocess.run(
        [str(lok_bin), "ask", "shout this"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ},
        cwd=project,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "\n=== upper ===\n\nSHOUT THIS\n\n"


# ----------------------------------------------------------------- doctor


def test_doctor_checks_each_enabled_backend_and_passes_when_one_is_ready(
    server: LLMServer, project: Path
) -> None:
    write_config(
        project,
        http_backends(server.url, "alpha")
        + GHOST
        + '[backends.off]\ntype = "command"\ncommand = "cat"\nenabled = false\n',
    )
    result = lok("doctor")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert any(line.startswith("  ✓ alpha") for line in lines)
    assert any(line.startswith("  ✗ ghost") and "not found on PATH" in line for line in lines)
    assert any(line.startswith("  ○ off") and "disabled" in line for line in lines)
    assert "1 of 2 enabled backend(s) ready." in result.stdout
    assert server.model_calls() == []  # no prompt without --probe


def test_doctor_exits_1_when_nothing_is_ready_and_reports_json(project: Path) -> None:
    write_config(
        project,
        GHOST + '[backends.down]\ntype = "ollama"\nurl = "http://127.0.0.1:9"\n',
    )
    result = lok("doctor", "--json")
    assert result.exit_code == 1
    doc = json.loads(result.stdout)
    assert doc["ok"] is False and doc["ready"] == []
    by_name = {b["name"]: b for b in doc["backends"]}
    assert by_name["ghost"]["found"] is False
    assert "cannot connect" in by_name["down"]["detail"]


def test_doctor_probe_sends_one_prompt_per_backend_in_parallel(
    server: LLMServer, project: Path
) -> None:
    server.latency = 1.0
    write_config(project, http_backends(server.url, "alpha", "beta"))
    started = time.monotonic()
    result = lok("doctor", "--probe", "-b", "alpha,beta")
    assert result.exit_code == 0
    assert time.monotonic() - started < 2.0
    assert len(server.model_calls()) == 2
    assert result.stdout.count("probe answered") == 2


def test_doctor_shows_whether_the_key_variable_is_set_never_its_value(
    server: LLMServer, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOK_PLANTED_KEY", PLANTED)
    monkeypatch.delenv("LOK_UNSET_KEY", raising=False)
    write_config(
        project,
        http_backends(server.url, "keyed", extra='api_key_env = "LOK_PLANTED_KEY"')
        + http_backends(server.url, "keyless", extra='api_key_env = "LOK_UNSET_KEY"'),
    )
    result = lok("doctor")
    assert "LOK_PLANTED_KEY set" in result.stdout
    assert "LOK_UNSET_KEY is not set" in result.stdout
    assert PLANTED not in result.stdout


# ----------------------------------------------------------------- backends


def test_backends_lists_configured_backends_sorted_with_type_and_where(project: Path) -> None:
    write_config(
        project,
        '[backends.zed]\ntype = "openai"\nurl = "http://127.0.0.1:8000/v1"\n'
        'model = "m1"\n[backends.abc]\ntype = "command"\ncommand = "my tool"\n'
        'args = ["--fast", "{prompt}"]\n',
    )
    result = lok("backends")
    assert result.exit_code == 0
    names = [line.split()[0] for line in result.stdout.splitlines()[1:]]
    assert names == sorted(names)
    abc = next(line for line in result.stdout.splitlines() if line.startswith("abc"))
    assert "command" in abc and "my tool --fast '{prompt}'" in abc
    zed = next(line for line in result.stdout.splitlines() if line.startswith("zed"))
    assert "http://127.0.0.1:8000/v1" in zed and zed.endswith("m1")
    doc = json.loads(lok("backends", "--json").stdout)
    entry = next(b for b in doc["backends"] if b["name"] == "claude")
    assert entry["enabled"] is False and entry["type"] == "claude"


def test_outside_a_lok_project_answers_are_cached_in_the_user_cache(
    project: Path, tmp_path: Path
) -> None:
    bare = tmp_path / "bare"
    bare.mkdir()
    config = tmp_path / "only-upper.toml"
    config.write_text(BUILTINS_OFF + UPPER)
    first = lok("-C", str(bare), "-c", str(config), "ask", "hi")
    second = lok("-C", str(bare), "-c", str(config), "ask", "hi")
    assert first.exit_code == second.exit_code == 0
    assert "(cached)" in second.stdout
    assert not (bare / ".lok").exists()
    assert (tmp_path / "cache" / "lok" / "ask" / ".lok" / "lok.db").is_file()


def test_ask_b_waits_out_a_429_with_retry_after_and_answers(
    server: LLMServer, project: Path
) -> None:
    write_config(project, http_backends(f"{server.url}/v1", "limited"))
    result = lok("ask", "--no-cache", "-b", "limited", "<<fail:429x1>> hi")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "\n=== limited ===\n\necho: hi\n\n"
    assert len(server.model_calls()) == 2
    assert result.stderr.startswith("  ↻ limited: rate limited")
    assert "retrying in 1.0s (retry 1 of 3)" in result.stderr
