"""`type = "ollama"`: an Ollama server's native chat API, streamed.

POST {url}/api/chat with `stream: true`; the reply is NDJSON, one
`{"message": {"content": …}, "done": false}` per piece and a last line with
`"done": true` and the counts. A `{"error": …}` line can arrive mid-stream.
The address comes from `url`, or from `command` as in the original
(`command = "http://localhost:11434"`).
"""

from __future__ import annotations

from typing import Any

from lokfile.backends import httpwire, registry
from lokfile.backends.base import BackendError, ErrorKind, Health, Request
from lokfile.backends.httpbase import HTTPBackend, StreamAnswer, chat_messages
from lokfile.model import BackendConfig

DEFAULT_URL = registry.default_url("ollama")
DEFAULT_MODEL = "llama3.2"
# lok's names for generation settings -> Ollama's `options` names
_OPTION_NAMES = {
    "temperature": "temperature",
    "seed": "seed",
    "num_ctx": "num_ctx",
    "max_tokens": "num_predict",
}
_NOT_OPTIONS = frozenset({"system"})


class _ChatStream(StreamAnswer):
    def line(self, text: str) -> None:
        """One NDJSON line of the reply."""
        if not text.strip():
            return
        doc = httpwire.parse_json_line(text, "ollama stream")
        if not isinstance(doc, dict):
            raise BackendError(
                ErrorKind.BAD_RESPONSE, f"ollama stream: unexpected line {text[:120]!r}"
            )
        self.document(doc)

    def document(self, doc: Any) -> None:
        """One NDJSON object: a piece, the last piece (`done`), or (`stream = false`) all."""
        if not isinstance(doc, dict):
            raise BackendError(ErrorKind.BAD_RESPONSE, f"ollama: not an answer: {str(doc)[:120]!r}")
        if doc.get("error"):
            message = str(doc["error"])
            kind = (
                ErrorKind.OVERLOAD
                if "busy" in message or "overloaded" in message
                else ErrorKind.FAILED
            )
            raise BackendError(kind, f"ollama: {message}")
        message_part = doc.get("message") or {}
        if isinstance(message_part, dict):
            self.parts.append(str(message_part.get("content") or ""))
        if doc.get("model"):
            self.model = str(doc["model"])
        self.started = True
        if doc.get("done"):
            self.complete = True
            self.finish = str(doc.get("done_reason") or "")
            self.truncated = self.finish == "length"
            self.usage = {
                "input_tokens": doc.get("prompt_eval_count"),
                "output_tokens": doc.get("eval_count"),
            }


class OllamaBackend(HTTPBackend):
    """Talks to an Ollama server; see the module docstring."""

    type_name = "ollama"
    reader = _ChatStream
    query_path = "/api/chat"
    listing_path = "/api/tags"

    def __init__(self, config: BackendConfig) -> None:
        super().__init__(config, httpwire.base_url(config, DEFAULT_URL))

    def body(self, request: Request) -> dict[str, Any]:
        """The /api/chat request for `request` (per-step options over the backend's)."""
        cfg = self.config
        model = request.model or cfg.model or DEFAULT_MODEL
        messages = chat_messages(request, cfg)
        per_request = {
            "temperature": request.temperature,
            "seed": request.seed,
            "max_tokens": request.max_tokens,
        }
        options: dict[str, Any] = {}
        for name, value in cfg.options.items():
            if name not in _NOT_OPTIONS:
                options[_OPTION_NAMES.get(name, name)] = value
        for name, value in per_request.items():
            if value is not None:
                options[_OPTION_NAMES[name]] = value
        body: dict[str, Any] = {
            "model": model, "messages": messages, "stream": httpwire.streaming(cfg)
        }
        if options:
            body["options"] = options
        return body

    def _key_set(self) -> bool | None:
        return None  # a key (for a proxy in front) is only reported when it is missing

    def _listed(self, doc: Any, key_set: bool | None) -> Health:
        """Ready when the model is pulled (GET /api/tags lists them)."""
        model = self.config.model or DEFAULT_MODEL
        names = {str(m.get("name")) for m in (doc or {}).get("models", []) if isinstance(m, dict)}
        wanted = {model, f"{model}:latest"} if ":" not in model else {model}
        if not names & wanted:
            return Health(
                ready=False,
                detail=f"{self.url} is up but model '{model}' is not pulled "
                f"(try: ollama pull {model})",
            )
        return Health(ready=True, detail=f"{self.url}, model {model}")
