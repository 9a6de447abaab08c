"""`type = "anthropic"`: the Anthropic Messages API, streamed.

POST {url}/v1/messages with `stream: true`; the reply is server-sent events:
message_start, content_block_delta (text_delta pieces), message_delta (usage),
message_stop. An `event: error` (e.g. overloaded_error) can arrive mid-stream.
Headers: x-api-key from the variable named by `api_key_env` (default
ANTHROPIC_API_KEY) and anthropic-version.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from lokfile.backends import httpwire, registry
from lokfile.backends.base import Answer, BackendError, ErrorKind, Health, Request
from lokfile.backends.httpbase import HTTPBackend, SSEStream, configured_headers
from lokfile.model import BackendConfig

DEFAULT_URL = registry.default_url("anthropic")
DEFAULT_MODEL = "claude-sonnet-4-20250514"
DEFAULT_KEY_ENV = registry.builtin("anthropic").key_env or ""
API_VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = registry.builtin("anthropic").max_tokens or 4096  # the API requires one


def _error_kind(error_type: str) -> ErrorKind:
    return {
        "overloaded_error": ErrorKind.OVERLOAD,
        "rate_limit_error": ErrorKind.RATE_LIMIT,
        "authentication_error": ErrorKind.AUTH,
        "permission_error": ErrorKind.AUTH,
        "timeout_error": ErrorKind.TIMEOUT,
    }.get(error_type, ErrorKind.FAILED)


class _MessageStream(SSEStream):
    def _event(self, event: str, data: str) -> None:
        doc = httpwire.parse_json_line(data, "anthropic stream") if data.strip() else {}
        if not isinstance(doc, dict):
            raise BackendError(
                ErrorKind.BAD_RESPONSE, f"anthropic stream: unexpected event {data[:120]!r}"
            )
        kind = str(doc.get("type") or event)
        if kind == "error":
            err = doc.get("error") or {}
            etype = str(err.get("type", "error")) if isinstance(err, dict) else "error"
            detail = str(err.get("message", data)) if isinstance(err, dict) else str(err)
            raise BackendError(_error_kind(etype), f"error in stream: {etype}: {detail}")
        self.started = True
        if kind == "message_start":
            started = doc.get("message") or {}
            self.model = str(started.get("model") or self.model)
            self._usage(started.get("usage") or {})
        elif kind == "content_block_delta":
            delta = doc.get("delta") or {}
            if delta.get("type") == "text_delta":
                self.parts.append(str(delta.get("text") or ""))
        elif kind == "message_delta":
            self._stopped((doc.get("delta") or {}).get("stop_reason"))
            self._usage(doc.get("usage") or {})
        elif kind == "message_stop":
            self.complete = True

    def document(self, doc: Any) -> None:
        """A whole Messages object (a server that answered a streamed request in one piece,
        or `stream = false`)."""
        if not isinstance(doc, dict) or doc.get("type") == "error" or "content" not in doc:
            if isinstance(doc, dict) and isinstance(doc.get("error"), dict):
                err = doc["error"]
                etype = str(err.get("type", "error"))
                raise BackendError(_error_kind(etype), f"{etype}: {err.get('message', '')}")
            raise BackendError(
                ErrorKind.BAD_RESPONSE, f"anthropic: not a message: {str(doc)[:120]!r}"
            )
        self.started = True
        self.model = str(doc.get("model") or self.model)
        for block in doc.get("content") or []:
            if isinstance(block, dict) and block.get("type") == "text":
                self.parts.append(str(block.get("text") or ""))
        self._stopped(doc.get("stop_reason"))
        self._usage(doc.get("usage") or {})
        self.complete = True

    def _stopped(self, reason: Any) -> None:
        if reason:
            self.finish = str(reason)
            self.truncated = self.finish == "max_tokens"

    def _usage(self, usage: dict[str, Any]) -> None:
        """Counts from message_start, then message_delta's (cumulative, so a later one
        wins; an input count of 0 or none does not replace a real one)."""
        if isinstance(usage.get("input_tokens"), int) and (
            usage["input_tokens"] or not self.usage.get("input_tokens")
        ):
            self.usage["input_tokens"] = usage["input_tokens"]
        if isinstance(usage.get("output_tokens"), int):
            self.usage["output_tokens"] = usage["output_tokens"]
        self._cache_tokens(usage)

    def _cache_tokens(self, usage: dict[str, Any]) -> None:
        """Anthropic counts cache reads and writes apart from `input_tokens`."""
        for ours, theirs in (
            ("cache_read_tokens", "cache_read_input_tokens"),
            ("cache_write_tokens", "cache_creation_input_tokens"),
        ):
            if isinstance(usage.get(theirs), int):
                self.usage[ours] = usage[theirs]

    def answer(self) -> Answer:
        """The answer, with `input_tokens` counting every prompt token (cached ones too)."""
        done = super().answer()
        usage = dict(done.usage)
        if isinstance(usage.get("input_tokens"), int):
            usage["input_tokens"] += int(usage.get("cache_read_tokens") or 0) + int(
                usage.get("cache_write_tokens") or 0
            )
        return replace(done, usage=usage)


class AnthropicBackend(HTTPBackend):
    """Talks to the Messages API; see the module docstring."""

    type_name = "anthropic"
    reader = _MessageStream
    query_path = "/v1/messages"
    listing_path = "/v1/models"

    def __init__(self, config: BackendConfig) -> None:
        super().__init__(config, httpwire.base_url(config, DEFAULT_URL))

    def _headers(self) -> tuple[dict[str, str], str | None]:
        headers = configured_headers(self.config)
        key = httpwire.api_key(self.config, DEFAULT_KEY_ENV, required=True)
        headers["x-api-key"] = key or ""
        headers["anthropic-version"] = str(
            self.config.extra.get("anthropic_version") or API_VERSION
        )
        return headers, key

    def body(self, request: Request) -> dict[str, Any]:
        """The Messages API request for `request`."""
        cfg = self.config
        body: dict[str, Any] = {
            "model": request.model or cfg.model or DEFAULT_MODEL,
            "max_tokens": int(
                httpwire.option("max_tokens", request.max_tokens, cfg) or DEFAULT_MAX_TOKENS
            ),
            "messages": [{"role": "user", "content": request.prompt}],
            **httpwire.api_options(cfg),
            "stream": httpwire.streaming(cfg),
        }
        system = httpwire.option("system", request.system, cfg)
        if system:
            body["system"] = str(system)
        temperature = httpwire.option("temperature", request.temperature, cfg)
        if temperature is not None:
            body["temperature"] = temperature
        return body

    def _key_set(self) -> bool | None:
        return httpwire.key_status(self.config, DEFAULT_KEY_ENV)

    def _listed(self, doc: Any, key_set: bool | None) -> Health:
        """Key set and accepted (GET /v1/models lists the models)."""
        detail = f"{self.url}, model {self.config.model or DEFAULT_MODEL}"
        return Health(ready=True, detail=detail, key_set=key_set)
