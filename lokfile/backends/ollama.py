"""`type = "ollama"`: an Ollama server's native chat API, streamed.

POST {url}/api/chat with `stream: true`; the reply is NDJSON, one
`{"message": {"content": …}, "done": false}` per piece and a last line with
`"done": true` and the counts. A `{"error": …}` line can arrive mid-stream.
The address comes from `url`, or from `command` as in the original
(`command = "http://localhost:11434"`).
"""

from __future__ import annotations

from typing import Any, ClassVar

from lokfile.backends import http
from lokfile.backends.base import Answer, BackendError, ErrorKind, Health, Request
from lokfile.model import BackendConfig

DEFAULT_URL = "http://localhost:11434"
DEFAULT_MODEL = "llama3.2"
# lok's names for generation settings -> Ollama's `options` names
_OPTION_NAMES = {
    "temperature": "temperature",
    "seed": "seed",
    "num_ctx": "num_ctx",
    "max_tokens": "num_predict",
}
_NOT_OPTIONS = frozenset({"system"})


class _ChatStream:
    def __init__(self, model: str) -> None:
        self.parts: list[str] = []
        self.model = model
        self.usage: dict[str, Any] = {}
        self.complete = False

    def line(self, text: str) -> None:
        if not text.strip():
            return
        doc = http.parse_json_line(text, "ollama stream")
        if not isinstance(doc, dict):
            raise BackendError(
                ErrorKind.BAD_RESPONSE, f"ollama stream: unexpected line {text[:120]!r}"
            )
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
        if doc.get("done"):
            self.complete = True
            self.usage = {
                "input_tokens": doc.get("prompt_eval_count"),
                "output_tokens": doc.get("eval_count"),
            }

    def answer(self) -> Answer:
        return Answer(
            "".join(self.parts), self.model, {k: v for k, v in self.usage.items() if v is not None}
        )


class OllamaBackend:
    """Talks to an Ollama server; see the module docstring."""

    type_name: ClassVar[str] = "ollama"

    def __init__(self, config: BackendConfig) -> None:
        self.config = config
        self.url = http.base_url(config, DEFAULT_URL)

    def _headers(self) -> tuple[dict[str, str], str | None]:
        headers = {str(k): str(v) for k, v in dict(self.config.extra.get("headers") or {}).items()}
        key = http.api_key(self.config)  # only when api_key_env names one (a proxy in front)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        return headers, key

    def body(self, request: Request) -> dict[str, Any]:
        """The /api/chat request for `request` (per-step options over the backend's)."""
        cfg = self.config
        model = request.model or cfg.model or DEFAULT_MODEL
        messages: list[dict[str, str]] = []
        system = http.option("system", request.system, cfg)
        if system:
            messages.append({"role": "system", "content": str(system)})
        messages.append({"role": "user", "content": request.prompt})
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
        body: dict[str, Any] = {"model": model, "messages": messages, "stream": True}
        if options:
            body["options"] = options
        return body

    def query(self, request: Request) -> Answer:
        """One streamed chat call."""
        headers, key = self._headers()
        body = self.body(request)
        reader = _ChatStream(str(body["model"]))
        timeout = http.effective_timeout(request.timeout_s, self.config)
        return http.post_stream(f"{self.url}/api/chat", body, headers, reader, timeout, [key])

    def health(self, probe: bool = False) -> Health:
        """Reachable (GET /api/tags) and the model pulled; with probe, a one-line chat."""
        try:
            headers, key = self._headers()
        except BackendError as exc:
            return Health(ready=False, detail=exc.message, key_set=False)
        failed, doc = http.reachability(f"{self.url}/api/tags", headers, [key])
        if failed is not None:
            return failed
        model = self.config.model or DEFAULT_MODEL
        names = {str(m.get("name")) for m in (doc or {}).get("models", []) if isinstance(m, dict)}
        wanted = {model, f"{model}:latest"} if ":" not in model else {model}
        if not names & wanted:
            return Health(
                ready=False,
                detail=f"{self.url} is up but model '{model}' is not pulled "
                f"(try: ollama pull {model})",
            )
        detail = f"{self.url}, model {model}"
        if probe:
            try:
                self.query(Request(prompt="Reply with the single word: ok", cwd=".", timeout_s=60))
            except BackendError as exc:
                return Health(ready=False, detail=f"{detail}; probe failed: {exc.summary()}")
            detail += "; probe answered"
        return Health(ready=True, detail=detail)
