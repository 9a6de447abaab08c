"""The real claude, codex and gemini CLIs, answering through the loopback server.

Install them with `tests/real_clis/install.sh [PREFIX]` and point
LOK_CLI_PREFIX at PREFIX (default: ~/.cache/lok-clis). Without them these
tests skip, unless LOK_REQUIRE_REAL_CLIS=1, when they fail. Each CLI runs with
a throw-away HOME and TMPDIR and with its retries capped.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lokfile.backends import create
from lokfile.backends.base import BackendError, ErrorKind, Request
from lokfile.model import BackendConfig
from tests.servers.llm import LLMServer

pytestmark = pytest.mark.real_cli

PREFIX = Path(os.environ.get("LOK_CLI_PREFIX") or Path.home() / ".cache" / "lok-clis")
KEY = "sk-loopback-planted-0042"


def binary(name: str) -> str:
    path = PREFIX / "node_modules" / ".bin" / name
    if not os.access(path, os.X_OK):
        message = f"{name} is not installed under {PREFIX} (run tests/real_clis/install.sh)"
        if os.environ.get("LOK_REQUIRE_REAL_CLIS") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return str(path)


@pytest.fixture
def server() -> Iterator[LLMServer]:
    with LLMServer() as srv:
        yield srv


@pytest.fixture
def sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """A throw-away HOME and TMPDIR for the CLI, and the key it is given."""
    home, tmp = tmp_path / "home", tmp_path / "tmp"
    home.mkdir()
    tmp.mkdir()
    monkeypatch.setenv("LOK_TEST_CLI_KEY", KEY)
    return {"HOME": str(home), "TMPDIR": str(tmp), "NO_COLOR": "1"}


def cli(name: str, server: LLMServer, env: dict[str, str], **kw: Any) -> Any:
    config = BackendConfig(
        name=name,
        type=name,
        command=binary(name),
        url=server.url,
        api_key_env="LOK_TEST_CLI_KEY",
        extra={"env": env},
        **kw,
    )
    return create(config)


def ask(b: Any, prompt: str, cwd: Path, timeout: float = 60.0, **kw: Any) -> Any:
    return b.query(Request(prompt=prompt, cwd=str(cwd), timeout_s=timeout, **kw))


def test_real_claude_answers_through_the_loopback_server(
    server: LLMServer, sandbox: dict[str, str], tmp_path: Path
) -> None:
    answer = ask(cli("claude", server, sandbox), "What is 2+2? token CLAUDE", tmp_path)
    assert answer.text == "echo: What is 2+2? token CLAUDE"
    main = [c for c in server.model_calls() if "token CLAUDE" in str(c.body)]
    assert main and main[-1].headers["x-api-key"] == KEY


def test_real_claude_rate_limit_is_classified_without_long_retries(
    server: LLMServer, sandbox: dict[str, str], tmp_path: Path
) -> None:
    started = time.monotonic()
    with pytest.raises(BackendError) as info:
        ask(cli("claude", server, sandbox), "<<fail:429>> please", tmp_path)
    assert info.value.kind is ErrorKind.RATE_LIMIT
    assert time.monotonic() - started < 20


def test_real_codex_answers_with_its_last_agent_message(
    server: LLMServer, sandbox: dict[str, str], tmp_path: Path
) -> None:
    b = cli("codex", server, sandbox, model="gpt-loopback")
    answer = ask(b, "Reply to token CODEX", tmp_path, system="Be brief.")
    assert answer.text == "echo: Reply to token CODEX"
    call = server.model_calls()[-1]
    assert call.path == "/v1/responses"
    assert call.headers["authorization"] == f"Bearer {KEY}"
    assert "Be brief." in str(call.body["input"])


def test_real_codex_that_never_gets_an_answer_is_stopped_at_the_deadline(
    server: LLMServer, sandbox: dict[str, str], tmp_path: Path
) -> None:
    started = time.monotonic()
    with pytest.raises(BackendError) as info:
        ask(cli("codex", server, sandbox), "<<hang>> wait forever", tmp_path, timeout=3.0)
    assert info.value.kind is ErrorKind.TIMEOUT
    assert time.monotonic() - started < 3.0 + 2.5


@pytest.mark.slow  # the gemini JS bundle starts in 1-5 s depending on load
def test_real_gemini_answers_through_the_loopback_server(
    server: LLMServer, sandbox: dict[str, str], tmp_path: Path
) -> None:
    b = cli("gemini", server, sandbox, model="gemini-2.5-flash")
    answer = ask(b, "Reply to token GEMINI", tmp_path)
    assert answer.text == "echo: Reply to token GEMINI"
    call = server.model_calls()[-1]
    assert "streamGenerateContent" in call.path
    assert call.headers["x-goog-api-key"] == KEY


@pytest.mark.slow
def test_real_gemini_rate_limit_exit_code_is_classified_after_one_attempt(
    server: LLMServer, sandbox: dict[str, str], tmp_path: Path
) -> None:
    b = cli("gemini", server, sandbox, model="gemini-2.5-flash")
    with pytest.raises(BackendError) as info:
        ask(b, "<<fail:429>> now", tmp_path)
    assert info.value.kind is ErrorKind.RATE_LIMIT
    assert len(server.model_calls()) == 1  # general.maxAttempts = 1 reached the CLI


# ----------------------------------------------------------- usage and cost

USAGE = "<<usage:in=1000,out=200,read=300,write=100>>"


def listed(model: str, provider: str, **tokens: int) -> float:
    """genai-prices' bundled figure, asked apart from lok."""
    prices = pytest.importorskip("genai_prices", reason="genai-prices needs Python 3.11+")
    Usage, calc_price = prices.Usage, prices.calc_price

    return float(calc_price(Usage(**tokens), model, provider_id=provider).total_price)


def test_real_claude_reports_every_models_tokens_and_its_own_cost(
    server: LLMServer, sandbox: dict[str, str], tmp_path: Path
) -> None:
    from lokfile.engine.cost import price_calls

    b = cli("claude", server, sandbox, model="claude-sonnet-4-5")
    answer = ask(b, f"{USAGE} count me", tmp_path)
    asked = len([c for c in server.model_calls() if "count me" in str(c.body)])
    assert asked >= 1  # its side calls carry the prompt too, and are paid for
    assert answer.usage["input_tokens"] == 1000 * asked
    assert answer.usage["output_tokens"] == 200 * asked
    assert answer.usage["cache_read_tokens"] == 300 * asked
    assert answer.usage["cache_write_tokens"] == 100 * asked
    usage = price_calls([{**answer.usage, "model": answer.model}], b.config)
    assert usage.source == "backend"  # claude's own total_cost_usd, not a lookup
    assert usage.cost == pytest.approx(answer.usage["cost_usd"])
    tokens = {"input_tokens": 1000, "output_tokens": 200}
    cached = {"cache_read_tokens": 300, "cache_write_tokens": 100}
    one = listed("claude-sonnet-4-5", "anthropic", **tokens, **cached)
    assert usage.cost == pytest.approx(asked * one)


def test_real_codex_tokens_are_priced_from_the_price_database(
    server: LLMServer, sandbox: dict[str, str], tmp_path: Path
) -> None:
    from lokfile.engine.cost import price_calls

    b = cli("codex", server, sandbox, model="gpt-5")
    answer = ask(b, f"{USAGE} count me", tmp_path)
    assert answer.usage == {
        "input_tokens": 1000,
        "output_tokens": 200,
        "cache_read_tokens": 300,
        "cache_write_tokens": 0,
    }
    usage = price_calls([{**answer.usage, "model": answer.model}], b.config)
    assert usage.source == "genai-prices"
    expected = listed("gpt-5", "openai", input_tokens=1000, output_tokens=200, cache_read_tokens=300)
    assert usage.cost == pytest.approx(expected)


@pytest.mark.slow
def test_real_gemini_tokens_come_from_its_stats_and_are_priced(
    server: LLMServer, sandbox: dict[str, str], tmp_path: Path
) -> None:
    from lokfile.engine.cost import price_calls

    b = cli("gemini", server, sandbox, model="gemini-2.5-flash")
    answer = ask(b, f"{USAGE} count me", tmp_path)
    assert (answer.usage["input_tokens"], answer.usage["output_tokens"]) == (1000, 200)
    assert answer.usage["cache_read_tokens"] == 300
    usage = price_calls([{**answer.usage, "model": answer.model}], b.config)
    expected = listed(
        "gemini-2.5-flash", "google", input_tokens=1000, output_tokens=200, cache_read_tokens=300
    )
    assert usage.cost == pytest.approx(expected)
