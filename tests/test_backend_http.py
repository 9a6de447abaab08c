"""The HTTP backends (ollama, openai, anthropic) against a real loopback server."""

from __future__ import annotations

import asyncio
import email.utils
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

from lokfile.backends import aiowire, create
from lokfile.backends.base import BackendError, ErrorKind, Request
from lokfile.model import BackendConfig
from tests.servers.llm import LLMServer

ANTHROPIC_KEY = "sk-ant-loopback"


@pytest.fixture
def server() -> Iterator[LLMServer]:
    with LLMServer() as srv:
        yield srv


@pytest.fixture
def anthropic_key(monkeypatch: pytest.MonkeyPatch) -> str:
    """ANTHROPIC_API_KEY set, as the anthropic backend requires a key."""
    monkeypatch.setenv("ANTHROPIC_API_KEY", ANTHROPIC_KEY)
    return ANTHROPIC_KEY


def backend(kind: str, url: str, **kw: Any) -> Any:
    """A backend that takes each answer as it comes: no transport retries (those have
    their own tests below), so a test sees how one answer is classified."""
    kw.setdefault("extra", {"max_retries": 0})
    return create(BackendConfig(name=f"my-{kind}", type=kind, url=url, **kw))


# Every query below is made twice: through the backend's own `query` (httpx on a thread,
# as in a worker process) and through the asyncio transport of the HTTP lane
# (lokfile/backends/aiowire.py, as `lok run` sends them): the same answers, the same
# errors, word for word.
_TRANSPORT = ["threads"]


@pytest.fixture(autouse=True, params=["threads", "asyncio"])
def transport(request: pytest.FixtureRequest) -> Iterator[str]:
    _TRANSPORT[0] = request.param
    yield request.param
    _TRANSPORT[0] = "threads"


def ask(b: Any, prompt: str, timeout: float = 10.0, **kw: Any) -> Any:
    req = Request(prompt=prompt, cwd=".", timeout_s=timeout, **kw)
    if _TRANSPORT[0] == "threads":
        return b.query(req)
    return asyncio.run(_ask_async(b, req))


async def _ask_async(b: Any, req: Request) -> Any:
    pool = aiowire.Pool()
    try:
        return await aiowire.post(b.prepare(req), pool, req.notify)
    finally:
        pool.close()


def failure(b: Any, prompt: str, timeout: float = 10.0) -> BackendError:
    with pytest.raises(BackendError) as info:
        ask(b, prompt, timeout)
    return info.value


def dead_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


# ----------------------------------------------------------------- ollama


def test_ollama_streams_the_answer_from_ndjson_pieces(server: LLMServer) -> None:
    answer = ask(backend("ollama", server.url), "first line\nsay hello please")
    assert answer.text == "echo: say hello please"
    assert answer.model == "llama3.2"
    assert answer.usage["output_tokens"] == 4
    call = server.model_calls()[-1]
    assert call.path == "/api/chat"
    assert call.body["stream"] is True


def test_ollama_sends_generation_options_and_system_with_step_values_winning(
    server: LLMServer,
) -> None:
    b = backend(
        "ollama",
        server.url,
        model="qwen",
        options={"temperature": 0.5, "num_ctx": 4096, "system": "be brief", "top_p": 0.9},
    )
    ask(b, "hi", temperature=0.0, seed=7, max_tokens=32)
    body = server.model_calls()[-1].body
    assert body["model"] == "qwen"
    assert body["options"] == {
        "temperature": 0.0,
        "num_ctx": 4096,
        "top_p": 0.9,
        "seed": 7,
        "num_predict": 32,
    }
    assert body["messages"][0] == {"role": "system", "content": "be brief"}


def test_ollama_takes_its_address_from_an_http_command_like_the_original(
    server: LLMServer,
) -> None:
    b = create(BackendConfig(name="ollama", type="ollama", command=server.url))
    assert ask(b, "from command").text == "echo: from command"


def test_ollama_503_busy_is_an_overload(server: LLMServer) -> None:
    err = failure(backend("ollama", server.url), "<<fail:503>>")
    assert err.kind is ErrorKind.OVERLOAD
    assert "server busy" in err.message


def test_ollama_error_line_inside_the_stream_fails_the_query(server: LLMServer) -> None:
    err = failure(backend("ollama", server.url), "<<stream-error>> go")
    assert err.kind is ErrorKind.FAILED
    assert "model runner has unexpectedly stopped" in err.message


def test_ollama_stream_cut_mid_body_is_a_network_error(server: LLMServer) -> None:
    err = failure(backend("ollama", server.url), "<<die>> a long enough answer")
    assert err.kind is ErrorKind.NETWORK


def test_ollama_health_reports_a_missing_model_with_the_pull_command(server: LLMServer) -> None:
    assert backend("ollama", server.url, model="llama3.2").health().ready
    missing = backend("ollama", server.url, model="mistral").health()
    assert not missing.ready
    assert "ollama pull mistral" in missing.detail


# ----------------------------------------------------------------- openai


def test_openai_streams_sse_until_done_and_sends_the_bearer_key(
    server: LLMServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOK_TEST_OPENAI_KEY", "sk-test-123456")
    b = backend("openai", server.url, model="m1", api_key_env="LOK_TEST_OPENAI_KEY")
    answer = ask(b, "what is up", system="sys text", temperature=0.2)
    assert answer.text == "echo: what is up"
    assert answer.usage == {"input_tokens": 7, "output_tokens": 4}
    call = server.model_calls()[-1]
    assert call.path == "/v1/chat/completions"
    assert call.headers["Authorization"] == "Bearer sk-test-123456"
    assert call.body["messages"][0] == {"role": "system", "content": "sys text"}
    assert call.body["temperature"] == 0.2


def test_openai_accepts_a_url_that_already_ends_in_v1(server: LLMServer) -> None:
    b = backend("openai", server.url + "/v1/")
    assert ask(b, "v1 root").text == "echo: v1 root"
    assert server.model_calls()[-1].path == "/v1/chat/completions"


def test_openai_429_is_rate_limited_with_retry_after_seconds(server: LLMServer) -> None:
    server.retry_after = "3"
    err = failure(backend("openai", server.url), "<<fail:429>>")
    assert err.kind is ErrorKind.RATE_LIMIT
    assert err.retry_after == 3.0


def test_retry_after_as_an_http_date_becomes_seconds_from_now(server: LLMServer) -> None:
    server.retry_after = email.utils.formatdate(time.time() + 30, usegmt=True)
    err = failure(backend("openai", server.url), "<<fail:429>>")
    assert err.kind is ErrorKind.RATE_LIMIT
    assert err.retry_after is not None and 25 <= err.retry_after <= 31


def test_openai_insufficient_quota_is_not_a_rate_limit(server: LLMServer) -> None:
    err = failure(backend("openai", server.url), "<<fail:quota>>")
    assert err.kind is ErrorKind.QUOTA
    assert not err.kind.retryable


def test_openai_missing_key_variable_is_an_auth_error_naming_it(server: LLMServer) -> None:
    b = backend("openai", server.url, api_key_env="LOK_TEST_UNSET_VARIABLE")
    err = failure(b, "hi")
    assert err.kind is ErrorKind.AUTH
    assert "LOK_TEST_UNSET_VARIABLE" in err.message
    assert server.model_calls() == []


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
def test_a_stream_cut_mid_body_is_a_network_error(
    server: LLMServer, kind: str, anthropic_key: str
) -> None:
    err = failure(backend(kind, server.url), "<<die>> cut this one")
    assert err.kind is ErrorKind.NETWORK


def test_connection_refused_is_a_network_error() -> None:
    err = failure(backend("openai", dead_port()), "anyone there?")
    assert err.kind is ErrorKind.NETWORK
    assert "cannot connect" in err.message


@pytest.mark.parametrize("kind", ["ollama", "openai", "anthropic"])
def test_a_server_that_never_answers_times_out_within_the_deadline(
    server: LLMServer, kind: str, anthropic_key: str
) -> None:
    started = time.monotonic()
    err = failure(backend(kind, server.url), "<<hang>>", timeout=1.0)
    elapsed = time.monotonic() - started
    assert err.kind is ErrorKind.TIMEOUT
    assert elapsed < 2.0


def test_a_slow_trickle_does_not_outlive_the_deadline(server: LLMServer) -> None:
    # each piece arrives in time for a per-read timeout; only the overall deadline stops it
    started = time.monotonic()
    err = failure(backend("ollama", server.url), "<<trickle:0.5>> slow answer", timeout=1.0)
    assert err.kind is ErrorKind.TIMEOUT
    assert time.monotonic() - started < 2.0


def test_a_one_megabyte_prompt_reaches_the_server_intact(server: LLMServer) -> None:
    prompt = ("0123456789abcdef" * 65536)[:-1] + "\nlast line"
    answer = ask(backend("openai", server.url), prompt)
    assert answer.text == "echo: last line"
    assert server.model_calls()[-1].body["messages"][-1]["content"] == prompt


# ----------------------------------------------------------------- anthropic


def test_anthropic_streams_text_deltas_with_key_and_version_headers(
    server: LLMServer, anthropic_key: str
) -> None:
    answer = ask(backend("anthropic", server.url, model="claude-x"), "hello claude", system="s")
    assert answer.text == "echo: hello claude"
    assert answer.model == "claude-x"
    call = server.model_calls()[-1]
    assert call.headers["x-api-key"] == anthropic_key
    assert call.headers["anthropic-version"] == "2023-06-01"
    assert call.body["system"] == "s"
    assert call.body["max_tokens"] == 4096


@pytest.mark.parametrize(
    ("prompt", "named"),
    [("<<fail:529>>", "529"), ("<<stream-error>> partial answer", "overloaded_error")],
    ids=["http-529", "error-event-mid-stream"],
)
def test_anthropic_529_or_an_overloaded_error_event_mid_stream_is_an_overload(
    server: LLMServer, anthropic_key: str, prompt: str, named: str
) -> None:
    err = failure(backend("anthropic", server.url), prompt)
    assert err.kind is ErrorKind.OVERLOAD
    assert named in err.message


def test_anthropic_429_carries_retry_after(server: LLMServer, anthropic_key: str) -> None:
    err = failure(backend("anthropic", server.url), "<<fail:429>>")
    assert err.kind is ErrorKind.RATE_LIMIT
    assert err.retry_after == 1.0


def test_anthropic_spend_limit_is_quota(server: LLMServer, anthropic_key: str) -> None:
    assert failure(backend("anthropic", server.url), "<<fail:quota>>").kind is ErrorKind.QUOTA


def test_a_rejected_key_is_auth_and_never_appears_in_the_message(
    server: LLMServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOK_TEST_ANT_KEY", "sk-ant-very-secret-987")
    b = backend("anthropic", server.url, api_key_env="LOK_TEST_ANT_KEY")
    err = failure(b, "<<fail:401>>")
    assert err.kind is ErrorKind.AUTH
    assert "sk-ant-very-secret-987" not in err.message
    assert "sk-ant-very-secret-987" not in err.summary()
    assert "***" in err.message


def test_anthropic_without_any_key_fails_before_sending(
    server: LLMServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    err = failure(backend("anthropic", server.url), "hi")
    assert err.kind is ErrorKind.AUTH
    assert "ANTHROPIC_API_KEY" in err.message
    assert server.model_calls() == []


def test_health_of_an_unreachable_server_is_not_ready_and_says_why() -> None:
    health = backend("openai", dead_port()).health()
    assert not health.ready
    assert "cannot connect" in health.detail


def test_health_probe_sends_one_prompt(server: LLMServer) -> None:
    health = backend("openai", server.url, model="loopback-model").health(probe=True)
    assert health.ready
    assert "probe answered" in health.detail
    assert len(server.model_calls()) == 1


# ----------------------------------------------------------------- transport retries


def retrying(kind: str, url: str, retries: int | None = None) -> Any:
    extra = {} if retries is None else {"max_retries": retries}
    return create(BackendConfig(name=f"my-{kind}", type=kind, url=url, extra=extra))


@pytest.mark.parametrize("kind", ["ollama", "openai", "anthropic"])
def test_a_429_with_retry_after_is_waited_out_and_asked_again(
    server: LLMServer, kind: str, anthropic_key: str
) -> None:
    told: list[str] = []
    started = time.monotonic()
    answer = ask(retrying(kind, server.url), "<<fail:429x1>> hello", notify=told.append)
    assert answer.text == "echo: hello"
    assert len(server.model_calls()) == 2
    assert time.monotonic() - started >= 1.0  # Retry-After: 1 was honoured
    assert len(told) == 1 and "rate limited" in told[0]
    assert told[0].endswith("retrying in 1.0s (retry 1 of 3)")


def test_an_overload_is_retried_with_the_wait_the_body_asks_for(server: LLMServer) -> None:
    told: list[str] = []
    answer = ask(retrying("openai", server.url), "<<fail:503x2>> busy", notify=told.append)
    assert answer.text.startswith("echo:")
    assert len(server.model_calls()) == 3
    assert [t.split(" — ")[1] for t in told] == [
        "retrying in 1.0s (retry 1 of 3)", "retrying in 1.0s (retry 2 of 3)"]


def test_a_connection_lost_mid_answer_is_retried(server: LLMServer) -> None:
    err = failure(retrying("openai", server.url, retries=1), "<<die>> cut every time")
    assert err.kind is ErrorKind.NETWORK
    assert len(server.model_calls()) == 2


def test_the_retries_are_bounded_and_the_last_error_is_raised(server: LLMServer) -> None:
    err = failure(retrying("openai", server.url, retries=2), "<<fail:429>>")
    assert err.kind is ErrorKind.RATE_LIMIT
    assert len(server.model_calls()) == 3


def test_a_wait_longer_than_the_deadline_is_not_waited_for(server: LLMServer) -> None:
    server.retry_after = "5"
    told: list[str] = []
    with pytest.raises(BackendError) as info:
        ask(retrying("openai", server.url), "<<fail:429>>", timeout=2.0, notify=told.append)
    assert info.value.kind is ErrorKind.RATE_LIMIT and info.value.retry_after == 5.0
    assert len(server.model_calls()) == 1 and told == []


@pytest.mark.parametrize(
    "prompt", ["<<fail:quota>>", "<<fail:401>>"], ids=["quota", "auth"]
)
def test_quota_and_auth_are_never_retried(server: LLMServer, prompt: str) -> None:
    told: list[str] = []
    with pytest.raises(BackendError):
        ask(retrying("openai", server.url), prompt, notify=told.append)
    assert len(server.model_calls()) == 1 and told == []


def test_nobody_listening_is_not_retried() -> None:
    told: list[str] = []
    with pytest.raises(BackendError) as info:
        ask(retrying("openai", dead_port()), "anyone?", notify=told.append)
    assert "cannot connect" in info.value.message and told == []
