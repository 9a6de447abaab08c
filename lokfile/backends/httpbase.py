"""What the HTTP backends (ollama, openai, anthropic) share above the wire.

`StreamAnswer` gathers a streamed reply into an Answer; `SSEStream` is the
same for server-sent events. `HTTPBackend` is the query and health skeleton:
each backend says where it posts and lists (`query_path`, `listing_path`),
which reader parses the reply, how the body and headers look, and what its
listing means for health.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, ClassVar

from lokfile.backends import httpwire, subproc
from lokfile.backends.base import Answer, BackendError, ErrorKind, Health, Request
from lokfile.model import BackendConfig


class StreamAnswer:
    """The pieces, model and usage a reply has told so far; subclasses read the lines
    (a stream) or the whole body (`document`: one JSON answer)."""

    def __init__(self, model: str) -> None:
        self.parts: list[str] = []
        self.model = model
        self.usage: dict[str, Any] = {}
        self.complete = False
        self.started = False  # some part of the protocol was read
        self.truncated = False  # the server stopped at the token limit
        self.finish = ""  # why the server says it stopped, when it says

    def line(self, text: str) -> None:
        """One line of the body; raise BackendError for an in-stream error."""
        raise NotImplementedError

    def document(self, doc: Any) -> None:
        """The whole body as one JSON answer; raise BackendError if it is not one."""
        raise NotImplementedError

    def answer(self) -> Answer:
        """The joined text, the model that answered, and the counts the server gave.
        An empty answer is refused (BAD_RESPONSE: not retried, never cached)."""
        text = "".join(self.parts)
        usage = {k: v for k, v in self.usage.items() if v is not None}
        if not text.strip():
            why = f"finish reason {self.finish!r}" if self.finish else "no finish reason"
            counted = usage.get("output_tokens")
            tokens = f", {counted} output tokens" if counted is not None else ""
            cut = " (cut at the token limit: raise max_tokens)" if self.truncated else ""
            raise BackendError(
                ErrorKind.BAD_RESPONSE, f"the server sent an empty answer ({why}{tokens}){cut}"
            )
        return Answer(text, self.model, usage, self.truncated)


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


@dataclass(frozen=True)
class Prepared:
    """One call ready to send: POST `body` as JSON to `url`, the reply read by a fresh
    `new_reader()`, within `timeout_s` for everything, transient failures asked again up
    to `retries` times; `secrets` are redacted from every message."""

    url: str
    body: dict[str, Any]
    headers: dict[str, str]
    new_reader: Callable[[], httpwire.StreamReader]
    timeout_s: float | None
    secrets: tuple[str | None, ...]
    retries: int


class HTTPBackend:
    """One POST per query (streamed unless `stream = false`); health is a GET of the
    server's model listing, and with `probe` a one-line prompt."""

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

    def prepare(self, request: Request) -> Prepared:
        """The call `request` makes, as data a transport sends (this one's `query`, or the
        asyncio one of lokfile/backends/aiowire.py)."""
        from lokfile.backends.retrying import max_retries

        headers, key = self._headers()
        body = self.body(request)
        model = str(body["model"])
        return Prepared(
            url=f"{self.url}{self.query_path}",
            body=body,
            headers=headers,
            new_reader=lambda: self.reader(model),
            timeout_s=httpwire.effective_timeout(request.timeout_s, self.config),
            secrets=(key,),
            retries=max_retries(self.config),
        )

    def query(self, request: Request) -> Answer:
        """One streamed call (transient failures retried: lokfile.backends.retrying)."""
        p = self.prepare(request)
        return httpwire.post_stream(
            p.url,
            p.body,
            p.headers,
            p.new_reader,
            p.timeout_s,
            p.secrets,
            p.retries,
            request.notify,
        )

    def _key_set(self) -> bool | None:
        return httpwire.key_status(self.config)

    def _listed(self, doc: Any, key_set: bool | None) -> Health:
        """Health once the listing answered: `doc` is its JSON."""
        raise NotImplementedError

    def health(self, probe: bool = False) -> Health:
        """Reachable (GET the listing) with the key accepted; with probe, a one-line prompt
        whatever the listing said (a server may list models and not answer, or answer
        without a listing). A listing the server does not have (404) is not a failure."""
        key_set = self._key_set()
        try:
            headers, key = self._headers()
        except BackendError as exc:
            return Health(ready=False, detail=exc.message, key_set=False)
        failed, doc, note = httpwire.reachability(
            f"{self.url}{self.listing_path}", headers, [key]
        )
        if failed is not None:
            health = replace(failed, key_set=key_set)
            return subproc.probe(self, health, keep_failure=True) if probe else health
        if note:
            health = Health(ready=True, detail=f"{self.url} ({note})", key_set=key_set)
        else:
            health = self._listed(doc, key_set)
        return subproc.probe(self, health) if probe else health
