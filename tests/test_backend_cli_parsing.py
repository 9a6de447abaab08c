"""How the claude, codex and gemini backends read their CLIs' output.

The outputs here are the shapes the real CLIs print (recorded in
shared/research/real-backends.md); the real binaries are exercised in
tests/test_backend_real_clis.py.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from lokfile.backends import create
from lokfile.backends.base import BackendError, ErrorKind, Request
from lokfile.backends.subproc import Completed
from lokfile.model import BackendConfig


def done(rc: int, out: str = "", err: str = "") -> Completed:
    return Completed(rc, out.encode(), err.encode(), 0.1)


def make(kind: str, **kw: Any) -> Any:
    return create(BackendConfig(name=kind, type=kind, **kw))


def failure(kind: str, completed: Completed) -> BackendError:
    with pytest.raises(BackendError) as info:
        make(kind).parse(completed)
    return info.value


def claude_result(**fields: Any) -> str:
    doc = {
        "type": "result",
        "subtype": "success",
        "is_error": False,
        "api_error_status": None,
        "result": "",
        "modelUsage": {},
        "usage": {},
    }
    doc.update(fields)
    return json.dumps(doc)


# ----------------------------------------------------------------- claude


def test_claude_answer_is_the_result_field() -> None:
    out = claude_result(
        result="4", modelUsage={"claude-x": {}}, usage={"input_tokens": 3, "output_tokens": 1}
    )
    answer = make("claude").parse(done(0, out))
    assert answer.text == "4"
    assert answer.model == "claude-x"
    assert answer.usage["output_tokens"] == 1


@pytest.mark.parametrize(
    ("status", "result", "kind"),
    [
        (429, "API Error: Request rejected (429) · rate limit", ErrorKind.RATE_LIMIT),
        (
            429,
            "API Error: Request rejected (429) · You have reached your specified API usage limits",
            ErrorKind.QUOTA,
        ),
        (529, "API Error: 529 Overloaded. This is a server-side issue", ErrorKind.OVERLOAD),
        (401, "Invalid API key · Fix external API key", ErrorKind.AUTH),
        (None, "Not logged in · Please run /login", ErrorKind.AUTH),
        (None, "API Error: Unable to connect to API (ConnectionRefused)", ErrorKind.NETWORK),
        (500, "API Error: 500 internal", ErrorKind.FAILED),
    ],
)
def test_claude_is_error_with_subtype_success_is_a_classified_failure(
    status: int | None, result: str, kind: ErrorKind
) -> None:
    err = failure(
        "claude", done(1, claude_result(is_error=True, api_error_status=status, result=result))
    )
    assert err.kind is kind
    assert result.splitlines()[0] in err.message


def test_claude_is_error_counts_even_with_exit_code_zero() -> None:
    err = failure("claude", done(0, claude_result(is_error=True, api_error_status=529, result="x")))
    assert err.kind is ErrorKind.OVERLOAD


def test_claude_without_json_and_a_bad_exit_reports_stderr() -> None:
    err = failure(
        "claude", done(1, "", "Error: When using --print, stream-json requires --verbose")
    )
    assert "requires --verbose" in err.message


def test_claude_argv_keeps_config_args_and_drops_flags_lok_sets_itself() -> None:
    b = make(
        "claude", args=("-p", "--", "--tools", ""), model="opus", options={"system": "be terse"}
    )
    argv = b.argv(Request(prompt="p", cwd="."))
    assert argv == [
        "claude",
        "-p",
        "--output-format",
        "json",
        "--model",
        "opus",
        "--append-system-prompt",
        "be terse",
        "--tools",
        "",
    ]


def test_claude_prompt_never_appears_in_argv() -> None:
    argv = make("claude").argv(Request(prompt="secret prompt text", cwd="."))
    assert all("secret prompt text" not in a for a in argv)


# ----------------------------------------------------------------- codex


def codex_events(*events: dict[str, Any]) -> str:
    return "\n".join(json.dumps(e) for e in events) + "\n"


def test_codex_answer_is_the_last_agent_message_and_error_items_are_warnings() -> None:
    out = codex_events(
        {"type": "thread.started", "thread_id": "t"},
        {
            "type": "item.completed",
            "item": {"id": "0", "type": "error", "message": "Model metadata not found"},
        },
        {"type": "item.completed", "item": {"id": "1", "type": "agent_message", "text": "interim"}},
        {"type": "item.completed", "item": {"id": "2", "type": "agent_message", "text": "final"}},
        {"type": "turn.completed", "usage": {"input_tokens": 12, "output_tokens": 4}},
    )
    answer = make("codex").parse(done(0, out))
    assert answer.text == "final"
    assert answer.usage == {"input_tokens": 12, "output_tokens": 4}


def test_codex_turn_failed_is_a_failure_even_after_an_answer() -> None:
    out = codex_events(
        {"type": "item.completed", "item": {"id": "1", "type": "agent_message", "text": "partial"}},
        {"type": "error", "message": "exceeded retry limit, last status: 429 Too Many Requests"},
        {
            "type": "turn.failed",
            "error": {"message": "exceeded retry limit, last status: 429 Too Many Requests"},
        },
    )
    err = failure("codex", done(1, out))
    assert err.kind is ErrorKind.RATE_LIMIT


@pytest.mark.parametrize(
    ("message", "kind"),
    [
        ("Quota exceeded. Check your plan and billing details.", ErrorKind.QUOTA),
        ("Selected model is at capacity. Please try a different model.", ErrorKind.OVERLOAD),
        ("unexpected status 401 Unauthorized: Incorrect API key", ErrorKind.AUTH),
        ("stream disconnected before completion: boom", ErrorKind.NETWORK),
    ],
)
def test_codex_failure_messages_are_classified(message: str, kind: ErrorKind) -> None:
    out = codex_events({"type": "turn.failed", "error": {"message": message}})
    assert failure("codex", done(1, out)).kind is kind


def test_codex_non_zero_exit_without_events_reports_the_error_line() -> None:
    err = failure(
        "codex", done(1, "", "WARNING: aliases\nMissing environment variable: `FAKE_KEY`.")
    )
    assert err.kind is ErrorKind.AUTH
    assert "FAKE_KEY" in err.message


def test_codex_argv_reads_stdin_in_a_read_only_sandbox_and_folds_the_original_args() -> None:
    argv = make("codex", args=("exec", "--json", "-s", "read-only")).argv(
        Request(prompt="p", cwd=".")
    )
    assert argv == [
        "codex",
        "exec",
        "--json",
        "--skip-git-repo-check",
        "--ephemeral",
        "-s",
        "read-only",
        "-",
    ]
    default = make("codex").argv(Request(prompt="p", cwd="."))
    assert default[-3:] == ["-s", "read-only", "-"]


def test_codex_url_defines_a_responses_provider_without_codex_retries() -> None:
    argv = make("codex", url="http://127.0.0.1:9/", api_key_env="K").argv(
        Request(prompt="p", cwd=".")
    )
    joined = " ".join(argv)
    assert 'model_providers.lok.base_url="http://127.0.0.1:9/v1"' in joined
    assert "model_providers.lok.request_max_retries=0" in joined
    assert 'model_providers.lok.env_key="K"' in joined


# ----------------------------------------------------------------- gemini


def test_gemini_answer_is_the_response_field() -> None:
    out = json.dumps(
        {
            "session_id": "s",
            "response": "4",
            "stats": {"models": {"m": {"tokens": {"prompt": 12, "candidates": 1}}}},
        }
    )
    answer = make("gemini").parse(done(0, out, "Warning: 256-color support not detected."))
    assert answer.text == "4"
    assert answer.usage == {"input_tokens": 12, "output_tokens": 1}


@pytest.mark.parametrize(
    ("rc", "code", "kind"),
    [
        (173, 429, ErrorKind.RATE_LIMIT),
        (247, 503, ErrorKind.OVERLOAD),
        (145, 401, ErrorKind.AUTH),
        (244, 500, ErrorKind.FAILED),
    ],
)
def test_gemini_error_json_on_stderr_and_status_exit_codes_are_classified(
    rc: int, code: int, kind: ErrorKind
) -> None:
    err_json = json.dumps(
        {"session_id": "s", "error": {"type": "Error", "message": f"boom {code}", "code": code}},
        indent=2,
    )
    stderr = (
        "Ripgrep is not available.\n    at async main (x.js:1:2) {\n  cause: {\n" + err_json + "\n"
    )
    err = failure("gemini", done(rc, "", stderr))
    assert err.kind is kind
    assert f"boom {code}" in err.message


def test_gemini_exit_code_alone_still_gives_the_status() -> None:
    assert failure("gemini", done(173, "", "something odd")).kind is ErrorKind.RATE_LIMIT


def test_gemini_argv_keeps_npx_package_words_next_to_the_command() -> None:
    b = make("gemini", command="npx", args=("@google/gemini-cli", "-m", "flash"))
    assert b.argv(Request(prompt="p", cwd=".")) == [
        "npx",
        "@google/gemini-cli",
        "-o",
        "json",
        "-m",
        "flash",
    ]


def test_gemini_system_text_goes_before_the_prompt() -> None:
    b = make("gemini", options={"system": "You review code."})
    assert b.prompt_text(Request(prompt="Look.", cwd=".")) == "You review code.\n\nLook."
