"""`type = "codex"`: the Codex CLI's non-interactive `exec` mode.

    codex exec --json --skip-git-repo-check --ephemeral -s read-only [-m M] ARGS… -   < prompt

The prompt goes on stdin (`-`). stdout is a JSON event stream; the answer is
the text of the LAST `agent_message` item (earlier ones are interim).
`turn.failed` or a non-zero exit means failure; `item.type == "error"` items
are warnings. Codex never gives up on an unreachable server, so lok's deadline
(the backend's `timeout`, else 600 s) always applies.

Config: `model`, `system` (Codex's developer instructions), `args` (a sandbox
flag there replaces the read-only default), `url` (a Responses-API server:
lok defines a model provider for it, with Codex's retries off), `api_key_env`,
`env`.
"""

from __future__ import annotations

import json
from typing import Any

from lokfile.backends import registry, subproc
from lokfile.backends.agentcli import AgentCLI
from lokfile.backends.base import Answer, BackendError, ErrorKind, Request

FALLBACK_TIMEOUT_S = 600.0
LOK_EXEC_FLAGS = ("--json", "--skip-git-repo-check", "--ephemeral")
# flags lok sets itself (the original's default args repeat `exec --json`)
LOK_FLAGS = {**{flag: 0 for flag in LOK_EXEC_FLAGS}, "-": 0}
_SANDBOX_FLAGS = ("-s", "--sandbox", "--full-auto", "--dangerously-bypass-approvals-and-sandbox")


def toml_string(value: str) -> str:
    """`value` as a TOML basic string (JSON's escapes are a subset TOML accepts)."""
    return json.dumps(value, ensure_ascii=False)


def kind_for_message(message: str) -> ErrorKind:
    """ErrorKind from the text Codex reports in `turn.failed` / `error` events."""
    text = message.lower()
    if "quota" in text or "billing" in text:
        return ErrorKind.QUOTA
    if "429" in text or "rate limit" in text or "too many requests" in text:
        return ErrorKind.RATE_LIMIT
    if "at capacity" in text or "overloaded" in text or "503" in text:
        return ErrorKind.OVERLOAD
    if (
        "401" in text
        or "403" in text
        or "unauthorized" in text
        or "missing environment variable" in text
    ):
        return ErrorKind.AUTH
    if "stream disconnected" in text or "connection" in text or "error sending request" in text:
        return ErrorKind.NETWORK
    return ErrorKind.FAILED


class Events:
    """What a Codex JSON event stream says: the last answer, the failure, the usage."""

    def __init__(self, stdout: str) -> None:
        self.answer: str | None = None
        self.failure: str | None = None
        self.last_error: str | None = None
        self.usage: dict[str, Any] = {}
        for line in stdout.splitlines():
            line = line.strip()
            if not line.startswith("{"):
                continue
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict):
                self._take(event)

    def _take(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind == "item.completed":
            item = event.get("item") or {}
            if item.get("type") == "agent_message":
                self.answer = str(item.get("text") or "")
        elif kind == "turn.failed":
            error = event.get("error") or {}
            self.failure = str(error.get("message") if isinstance(error, dict) else error)
        elif kind == "error":
            self.last_error = str(event.get("message") or "")
        elif kind == "turn.completed":
            self.usage = dict(event.get("usage") or {})


class CodexBackend(AgentCLI):
    """Runs `codex exec`; see the module docstring."""

    type_name = "codex"
    program = "codex"
    lok_flags = LOK_FLAGS
    install = registry.install_hint("codex") or ""

    def _env(self) -> tuple[dict[str, str], str | None]:
        # the built-in provider reads OPENAI_API_KEY; lok's provider for `url` names the variable
        return self._with_key({}, None if self.config.url else "OPENAI_API_KEY")

    def argv(self, request: Request) -> list[str]:
        """The command line; the final `-` makes Codex read the prompt from stdin."""
        cfg = self.config
        words, rest = subproc.split_args(cfg.args, LOK_FLAGS, ("exec",))
        argv = [*subproc.program_argv(cfg, self.program), *words, "exec", *LOK_EXEC_FLAGS]
        if not any(a == f or a.startswith(f + "=") for a in rest for f in _SANDBOX_FLAGS):
            argv += ["-s", "read-only"]
        model = request.model or cfg.model
        if model:
            argv += ["-m", model]
        system = request.system or cfg.options.get("system")
        if system:
            argv += ["-c", f"developer_instructions={toml_string(str(system))}"]
        if cfg.url:
            root = cfg.url.rstrip("/")
            root = root if root.endswith("/v1") else f"{root}/v1"
            provider = "model_providers.lok"
            argv += [
                "-c",
                "model_provider=lok",
                "-c",
                f"{provider}.name={toml_string('lok: ' + cfg.name)}",
                "-c",
                f"{provider}.base_url={toml_string(root)}",
                "-c",
                f"{provider}.wire_api={toml_string('responses')}",
                # Codex's own retries would outlast lok's deadline; lok retries.
                "-c",
                f"{provider}.request_max_retries=0",
                "-c",
                f"{provider}.stream_max_retries=0",
            ]
            if cfg.api_key_env:
                argv += ["-c", f"{provider}.env_key={toml_string(cfg.api_key_env)}"]
        return [*argv, *rest, "-"]

    def timeout(self, request: Request) -> float | None:
        """lok's deadline, never none: Codex itself never gives up on a dead server."""
        return subproc.effective_timeout(request.timeout_s, self.config) or FALLBACK_TIMEOUT_S

    def parse(self, done: subproc.Completed, key: str | None = None) -> Answer:
        """The last agent message, or the classified failure."""
        events = Events(done.out)
        if events.failure is not None or done.returncode != 0:
            detail = (
                events.failure
                or events.last_error
                or _codex_error_line(done.err)
                or f"exit code {done.returncode}"
            )
            raise BackendError(
                kind_for_message(detail), subproc.redact(f"codex failed: {detail}", [key])
            )
        if events.answer is None:
            raise BackendError(ErrorKind.BAD_RESPONSE, "codex finished without an agent message")
        usage = {
            "input_tokens": events.usage.get("input_tokens"),  # cached ones included
            "output_tokens": events.usage.get("output_tokens"),  # reasoning included
            "cache_read_tokens": events.usage.get("cached_input_tokens"),
            "cache_write_tokens": events.usage.get("cache_write_input_tokens"),
        }
        return Answer(
            events.answer, self.config.model, {k: v for k, v in usage.items() if v is not None}
        )


def _codex_error_line(stderr: str) -> str:
    """Codex's `ERROR: …` line on stderr, else its last line (warnings come first)."""
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    for line in lines:
        if line.startswith(("ERROR", "Error")):
            return line
    return lines[-1] if lines else ""
