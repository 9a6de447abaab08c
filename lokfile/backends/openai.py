"""`type = "openai"`: any OpenAI-compatible Chat Completions server, streamed.

POST {url}/v1/chat/completions (a `url` already ending in `/v1` is fine) with
`stream: true`; the reply is server-sent events, `data: {chunk}` lines whose
`choices[0].delta.content` pieces make the answer, until `data: [DONE]`. The
key comes from the variable named by `api_key_env` and travels as a Bearer
token; with no `api_key_env` no Authorization header is sent (local servers).
"""

from __future__ import annotations

from typing import Any, ClassVar

from lokfile.backends import http
from lokfile.backends.base import Answer, BackendError, ErrorKind, Health, Request
from lokfile.model import BackendConfig

DEFAULT_URL = "https://api.openai.com"
DEFAULT_MODEL = "gpt-4o-mini"


def api_root(config: BackendConfig) -> str:
    """The `/v1` root of the server, whether or not the configured url names it."""
    url = http.base_url(config, DEFAULT_URL)
    return url if url.endswith("/v1") else f"{url}/v1"


class _ChatStream:
    def __init__(self, model: str) -> None:
        self.parts: list[str] = []
        self.model = model
        self.usage: dict[str, Any] = {}
        self.complete = False
        self._sse = http.SSEParser(self._event)

    def line(self, text: str) -> None:
        self._sse.feed(text)

    def _event(self, event: str, data: str) -> None:
        if data.strip() == "[DONE]":
            self.complete = True
            return
        doc = http.parse_json_line(data, "openai stream")
        if not isinstance(doc, dict):
            raise BackendError(
                ErrorKind.BAD_RESPONSE, f"openai stream: unexpected event {data[:120]!r}"
            )
        if doc.get("error") or event == "error":
            detail = http.error_message(data)
            kind = ErrorKind.OVERLOAD if "overload" in detail.lower() else ErrorKind.FAILED
            raise BackendError(kind, f"error in stream: {detail}")
        if doc.get("model"):
            self.model = str(doc["model"])
        for choice in doc.get("choices") or []:
            delta = choice.get("delta") or {}
            if delta.get("content"):
                self.parts.append(str(delta["content"]))
        if isinstance(doc.get("usage"), dict):
            usage = doc["usage"]
            self.usage = {
                "input_tokens": usage.get("prompt_tokens"),
                "output_tokens": usage.get("completion_tokens"),
            }

    def answer(self) -> Answer:
        return Answer(
            "".join(self.parts), self.model, {k: v for k, v in self.usage.items() if v is not None}
        )


class OpenAIBackend:
    """Talks to an OpenAI-compatible server; see the module docstring."""

    type_name: ClassVar[str] = "openai"

    def __init__(self, config: BackendConfig) -> None:
        self.config = config
        self.root = api_root(config)

    def _headers(self) -> tuple[dict[str, str], str | None]:
        headers = {str(k): str(v) for k, v in dict(self.config.extra.get("headers") or {}).items()}
        key = http.api_key(self.config)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        return headers, key

    def body(self, request: Request) -> dict[str, Any]:
        """The chat-completions request for `request`."""
        cfg = self.config
        messages: list[dict[str, str]] = []
        system = http.option("system", request.system, cfg)
        if system:
            messages.append({"role": "system", "content": str(system)})
        messages.append({"role": "user", "content": request.prompt})
        body: dict[str, Any] = {
            "model": request.model or cfg.model or DEFAULT_MODEL,
            "messages": messages,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        for name, value in (
            ("temperature", request.temperature),
            ("seed", request.seed),
            ("max_tokens", request.max_tokens),
        ):
            chosen = http.option(name, value, cfg)
            if chosen is not None:
                body[name] = chosen
        return body

    def query(self, request: Request) -> Answer:
        """One streamed chat-completions call."""
        headers, key = self._headers()
        body = self.body(request)
        reader = _ChatStream(str(body["model"]))
        timeout = http.effective_timeout(request.timeout_s, self.config)
        return http.post_stream(
            f"{self.root}/chat/completions", body, headers, reader, timeout, [key]
        )

    def health(self, probe: bool = False) -> Health:
        """Reachable (GET /v1/models) with the key accepted; with probe, a one-line chat."""
        key_set = http.key_status(self.config)
        try:
            headers, key = self._headers()
        except BackendError as exc:
            return Health(ready=False, detail=exc.message, key_set=False)
        failed, doc = http.reachability(f"{self.root}/models", headers, [key])
        if failed is not None:
            return Health(ready=False, found=failed.found, detail=failed.detail, key_set=key_set)
        model = self.config.model or DEFAULT_MODEL
        detail = f"{self.root}, model {model}"
        ids = {str(m.get("id")) for m in (doc or {}).get("data", []) if isinstance(m, dict)}
        if ids and model not in ids:
            detail += f" (not listed by the server: {', '.join(sorted(ids)[:5])})"
        if probe:
            try:
                self.query(Request(prompt="Reply with the single word: ok", cwd=".", timeout_s=60))
            except BackendError as exc:
                return Health(
                    ready=False, detail=f"{detail}; probe failed: {exc.summary()}", key_set=key_set
                )
            detail += "; probe answered"
        return Health(ready=True, detail=detail, key_set=key_set)
