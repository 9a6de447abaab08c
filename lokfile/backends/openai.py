"""`type = "openai"`: any OpenAI-compatible Chat Completions server, streamed.

POST {url}/v1/chat/completions (a `url` already ending in `/v1` is fine) with
`stream: true`; the reply is server-sent events, `data: {chunk}` lines whose
`choices[0].delta.content` pieces make the answer, until `data: [DONE]`. The
key comes from the variable named by `api_key_env` and travels as a Bearer
token; with no `api_key_env` no Authorization header is sent (local servers).
"""

from __future__ import annotations

import json
from typing import Any

from lokfile.backends import httpwire, registry
from lokfile.backends.base import BackendError, ErrorKind, Health, Request
from lokfile.backends.httpbase import HTTPBackend, SSEStream, chat_messages
from lokfile.model import BackendConfig

DEFAULT_URL = registry.default_url("openai")
DEFAULT_MODEL = "gpt-4o-mini"


def api_root(config: BackendConfig) -> str:
    """The `/v1` root of the server, whether or not the configured url names it."""
    url = httpwire.base_url(config, DEFAULT_URL)
    return url if url.endswith("/v1") else f"{url}/v1"


# [DONE] after some text but no finish_reason: the server stopped the answer midway
CUT_SHORT = (
    "stream cut short: [DONE] came with no finish_reason (llama-cpp-python does this to a "
    "running stream when another request arrives, unless started with --interrupt_requests False)"
)


class _ChatStream(SSEStream):
    def _event(self, event: str, data: str) -> None:
        if data.strip() == "[DONE]":
            if self.parts and not self.finish:
                raise BackendError(ErrorKind.NETWORK, CUT_SHORT)
            self.complete = True
            return
        doc = httpwire.parse_json_line(data, "openai stream")
        if not isinstance(doc, dict):
            raise BackendError(
                ErrorKind.BAD_RESPONSE, f"openai stream: unexpected event {data[:120]!r}"
            )
        if doc.get("error") or event == "error":
            detail = httpwire.error_message(data)
            kind = ErrorKind.OVERLOAD if "overload" in detail.lower() else ErrorKind.FAILED
            raise BackendError(kind, f"error in stream: {detail}")
        self.started = True
        self._read(doc, "delta")

    def document(self, doc: Any) -> None:
        """A whole chat.completion (a server that answered a streamed request in one piece,
        or `stream = false`)."""
        if not isinstance(doc, dict) or doc.get("error") or "choices" not in doc:
            if isinstance(doc, dict) and doc.get("error"):
                raise BackendError(ErrorKind.FAILED, f"error: {httpwire.error_message(json.dumps(doc))}")
            raise BackendError(
                ErrorKind.BAD_RESPONSE, f"openai: not a chat completion: {str(doc)[:120]!r}"
            )
        self.started = True
        self._read(doc, "message")
        self.complete = True

    def _read(self, doc: dict[str, Any], part: str) -> None:
        """Text, finish reason, model and usage of a chunk (`delta`) or a completion."""
        if doc.get("model"):
            self.model = str(doc["model"])
        for choice in doc.get("choices") or []:
            piece = choice.get(part) or {}
            if piece.get("content"):
                self.parts.append(str(piece["content"]))
            if choice.get("finish_reason"):
                self.finish = str(choice["finish_reason"])
                self.truncated = self.finish == "length"
        if isinstance(doc.get("usage"), dict):
            usage = doc["usage"]
            self.usage = {
                "input_tokens": usage.get("prompt_tokens"),
                "output_tokens": usage.get("completion_tokens"),
                # part of prompt_tokens, served from the provider's prompt cache
                "cache_read_tokens": (usage.get("prompt_tokens_details") or {}).get(
                    "cached_tokens"
                ),
            }


class OpenAIBackend(HTTPBackend):
    """Talks to an OpenAI-compatible server; see the module docstring."""

    type_name = "openai"
    reader = _ChatStream
    query_path = "/chat/completions"  # below the /v1 root
    listing_path = "/models"

    def __init__(self, config: BackendConfig) -> None:
        super().__init__(config, api_root(config))

    def body(self, request: Request) -> dict[str, Any]:
        """The chat-completions request for `request`."""
        cfg = self.config
        messages = chat_messages(request, cfg)
        body: dict[str, Any] = {
            "model": request.model or cfg.model or DEFAULT_MODEL,
            "messages": messages,
            **httpwire.api_options(cfg),
            "stream": httpwire.streaming(cfg),
        }
        if body["stream"]:
            body["stream_options"] = {"include_usage": True}
        for name, value in (
            ("temperature", request.temperature),
            ("seed", request.seed),
            ("max_tokens", request.max_tokens),
        ):
            chosen = httpwire.option(name, value, cfg)
            if chosen is not None:
                body[name] = chosen
        return body

    def _listed(self, doc: Any, key_set: bool | None) -> Health:
        """Key accepted (GET /v1/models); a model the server does not list is only noted."""
        model = self.config.model or DEFAULT_MODEL
        detail = f"{self.url}, model {model}"
        ids = {str(m.get("id")) for m in (doc or {}).get("data", []) if isinstance(m, dict)}
        if ids and model not in ids:
            detail += f" (not listed by the server: {', '.join(sorted(ids)[:5])})"
        return Health(ready=True, detail=detail, key_set=key_set)
