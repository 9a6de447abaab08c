"""`type = "anthropic"`: the Anthropic Messages API, streamed.

POST {url}/v1/messages with `stream: true`; the reply is server-sent events:
message_start, content_block_delta (text_delta pieces), message_delta (usage),
message_stop. An `event: error` (e.g. overloaded_error) can arrive mid-stream.
Headers: x-api-key from the variable named by `api_key_env` (default
ANTHROPIC_API_KEY) and anthropic-version.
"""

from __future__ import annotations

from typing import Any, ClassVar

from lokfile.backends import http
from lokfile.backends.base import Answer, BackendError, ErrorKind, Health, Request
from lokfile.model import BackendConfig

DEFAULT_URL = "https://api.anthropic.com"
DEFAULT_MODEL = "claude-sonnet-4-20250514"
DEFAULT_KEY_ENV = "ANTHROPIC_API_KEY"
API_VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 4096  # the API requires max_tokens; the original sent 4096


def _error_kind(error_type: str) -> ErrorKind:
    return {
        "overloaded_error": ErrorKind.OVERLOAD,
        "rate_limit_error": ErrorKind.RATE_LIMIT,
        "authentication_error": ErrorKind.AUTH,
        "permission_error": ErrorKind.AUTH,
        "timeout_error": ErrorKind.TIMEOUT,
    }.get(error_type, ErrorKind.FAILED)


class _MessageStream:
    def __init__(self, model: str) -> None:
        self.parts: list[str] = []
        self.model = model
        self.usage: dict[str, Any] = {}
        self.complete = False
        self._sse = http.SSEParser(self._event)

    def line(self, text: str) -> None:
        self._sse.feed(text)

    def _event(self, event: str, data: str) -> None:
        doc = http.parse_json_line(data, "anthropic stream") if data.strip() else {}
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
        if kind == "message_start":
            started = doc.get("message") or {}
            self.model = str(started.get("model") or self.model)
            self.usage["input_tokens"] = (started.get("usage") or {}).get("input_tokens")
        elif kind == "content_block_delta":
            delta = doc.get("delta") or {}
            if delta.get("type") == "text_delta":
                self.parts.append(str(delta.get("text") or ""))
        elif kind == "message_delta":
            self.usage["output_tokens"] = (doc.get("usage") or {}).get("output_tokens")
        elif kind == "message_stop":
            self.complete = True

    def answer(self) -> Answer:
        return Answer(
            "".join(self.parts), self.model, {k: v for k, v in self.usage.items() if v is not None}
        )


class AnthropicBackend:
    """Talks to the Messages API; see the module docstring."""

    type_name: ClassVar[str] = "anthropic"

    def __init__(self, config: BackendConfig) -> None:
        self.config = config
        self.url = http.base_url(config, DEFAULT_URL)

    def _headers(self) -> tuple[dict[str, str], str | None]:
        headers = {str(k): str(v) for k, v in dict(self.config.extra.get("headers") or {}).items()}
        key = http.api_key(self.config, DEFAULT_KEY_ENV, required=True)
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
                http.option("max_tokens", request.max_tokens, cfg) or DEFAULT_MAX_TOKENS
            ),
            "messages": [{"role": "user", "content": request.prompt}],
            "stream": True,
        }
        system = http.option("system", request.system, cfg)
        if system:
            body["system"] = str(system)
        temperature = http.option("temperature", request.temperature, cfg)
        if temperature is not None:
            body["temperature"] = temperature
        return body

    def query(self, request: Request) -> Answer:
        """One streamed Messages call."""
        headers, key = self._headers()
        body = self.body(request)
        reader = _MessageStream(str(body["model"]))
        timeout = http.effective_timeout(request.timeout_s, self.config)
        return http.post_stream(f"{self.url}/v1/messages", body, headers, reader, timeout, [key])

    def health(self, probe: bool = False) -> Health:
        """Key set and accepted (GET /v1/models); with probe, a one-line message."""
        key_set = http.key_status(self.config, DEFAULT_KEY_ENV)
        try:
            headers, key = self._headers()
        except BackendError as exc:
            return Health(ready=False, detail=exc.message, key_set=False)
        failed, _ = http.reachability(f"{self.url}/v1/models", headers, [key])
        if failed is not None:
            return Health(ready=False, found=failed.found, detail=failed.detail, key_set=key_set)
        detail = f"{self.url}, model {self.config.model or DEFAULT_MODEL}"
        if probe:
            try:
                self.query(Request(prompt="Reply with the single word: ok", cwd=".", timeout_s=60))
            except BackendError as exc:
                return Health(
                    ready=False, detail=f"{detail}; probe failed: {exc.summary()}", key_set=key_set
                )
            detail += "; probe answered"
        return Health(ready=True, detail=detail, key_set=key_set)
