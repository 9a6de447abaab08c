"""What the HTTP backends (ollama, openai, anthropic) share above the wire.

`StreamAnswer` gathers a streamed reply into an Answer; `SSEStream` is the
same for server-sent events. `HTTPBackend` is the query and health skeleton:
each backend says where it posts and lists (`query_path`, `listing_path`),
which reader parses the reply, how the body and headers look, and what its
listing means for health.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, ClassVar

from lokfile.backends import httpwire, subproc
from lokfile.backends.base import Answer, BackendError, Health, Request
from lokfile.model import BackendConfig


class StreamAnswer:
    """The pieces, model and usage a stream has told so far; subclasses read the lines."""

    def __init__(self, model: str) -> None:
        self.parts: list[str] = []
        self.model = model
        self.usage: dict[str, Any] = {}
        self.complete = False

    def line(self, text: str) -> None:
        """One line of the body; raise BackendError for an in-stream error."""
        raise NotImplementedError

    def answer(self) -> Answer:
        """The joined text, the model that answered, and the counts the server gave."""
        return Answer(
            "".join(self.parts), self.model, {k: v for k, v in self.usage.items() if v is not None}
        )


class SSEStream(StreamAnswer):
    """A StreamAnswer fed by server-sent events; subclasses handle each event."""

    def __init__(self, model: str) -> None:
        super().__init__(model)
        self._sse = httpwire.SSEParser(self._event)

    def line(self, text: str) -> None:
        """One line of the body, passed to the SSE parser."""
        self._sse.feed(text)

    def _event(self, event: str, data: str) -> None:
        raise NotImplementedError


def configured_headers(config: BackendConfig) -> dict[str, str]:
    """The backend's `headers` table, as strings."""
    return {str(k): str(v) for k, v in dict(config.extra.get("headers") or {}).items()}


def chat_messages(request: Request, config: BackendConfig) -> list[dict[str, str]]:
    """Chat turns: the system text (the step's, else the backend's) if any, then the prompt."""
    messages: list[dict[str, str]] = []
    system = httpwire.option("system", request.system, config)
    if system:
        messages.append({"role": "system", "content": str(system)})
    messages.append({"role": "user", "content": request.prompt})
    return messages


class HTTPBackend:
    """One streamed POST per query; health is a GET of the server's model listing."""

    type_name: ClassVar[str]
    reader: ClassVar[type[StreamAnswer]]
    query_path: ClassVar[str]
    listing_path: ClassVar[str]

    def __init__(self, config: BackendConfig, url: str) -> None:
        self.config = config
        self.url = url

    def _headers(self) -> tuple[dict[str, str], str | None]:
        headers = configured_headers(self.config)
        key = httpwire.api_key(self.config)  # only when api_key_env names one (local servers need none)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        return headers, key

    def body(self, request: Request) -> dict[str, Any]:
        """The request body for `request`."""
        raise NotImplementedError

    def query(self, request: Request) -> Answer:
        """One streamed call (transient failures retried: lokfile.backends.retrying)."""
        from lokfile.backends.retrying import max_retries

        headers, key = self._headers()
        body = self.body(request)
        model = str(body["model"])
        timeout = httpwire.effective_timeout(request.timeout_s, self.config)
        return httpwire.post_stream(
            f"{self.url}{self.query_path}",
            body,
            headers,
            lambda: self.reader(model),
            timeout,
            [key],
            max_retries(self.config),
            request.notify,
        )

    def _key_set(self) -> bool | None:
        return httpwire.key_status(self.config)

    def _listed(self, doc: Any, key_set: bool | None) -> Health:
        """Health once the listing answered: `doc` is its JSON."""
        raise NotImplementedError

    def health(self, probe: bool = False) -> Health:
        """Reachable (GET the listing) with the key accepted; with probe, a one-line prompt."""
        key_set = self._key_set()
        try:
            headers, key = self._headers()
        except BackendError as exc:
            return Health(ready=False, detail=exc.message, key_set=False)
        failed, doc = httpwire.reachability(f"{self.url}{self.listing_path}", headers, [key])
        if failed is not None:
            return replace(failed, key_set=key_set)
        health = self._listed(doc, key_set)
        return subproc.probe(self, health) if probe and health.ready else health
