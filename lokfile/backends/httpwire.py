"""What the HTTP backends share: one streaming POST under a deadline, stream
parsers (SSE, NDJSON), and the mapping of HTTP failures to ErrorKind.

This is the only module of lok that imports httpx, and only inside the
functions that send (importing it costs ~100 ms): the HTTP backends and the
asyncio transport (lokfile/backends/aiowire.py) share everything else here
without paying for it, and `lok --help` never does.

Failure classes, one place for all servers:

    429 (+ quota words) -> quota        429 -> rate_limit (Retry-After honoured)
    529, 503, "overloaded" -> overload  401, 403 -> auth
    408, 504 -> timeout                 connection refused / reset / cut stream -> network
    unreadable body -> bad_response     anything else -> failed
"""

from __future__ import annotations

import email.utils
import json
import os
import re
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from lokfile.backends.base import Answer, BackendError, ErrorKind, Health

# re-exported so each HTTP backend needs one helper module
from lokfile.backends.ready import base_url as base_url
from lokfile.backends.subproc import effective_timeout as effective_timeout
from lokfile.backends.subproc import redact as redact
from lokfile.model import BackendConfig

if TYPE_CHECKING:
    import httpx

T = TypeVar("T")
HEALTH_TIMEOUT_S = 2.0
CONNECT_TIMEOUT_S = 10.0
_QUOTA_MARKERS = (
    "insufficient_quota",
    "spend_limit",
    "billing",
    "exceeded your current quota",
    "usage limits",
    "quotafailure",
)
_OVERLOAD_MARKERS = ("overloaded", "server busy", "at capacity")


# --------------------------------------------------------------------------
# Configuration helpers
# --------------------------------------------------------------------------




def api_key(
    config: BackendConfig, default_env: str | None = None, required: bool = False
) -> str | None:
    """The key named by `api_key_env` (or `default_env`), read from the environment only.

    A missing variable is an AUTH error when the key is required, or when the
    user named the variable explicitly (they meant to send a key).
    """
    var = config.api_key_env or default_env
    if not var:
        return None
    value = os.environ.get(var, "").strip()
    if value:
        return value
    if required or config.api_key_env:
        raise BackendError(
            ErrorKind.AUTH, f"environment variable {var} is not set (it should hold the API key)"
        )
    return None


def key_status(config: BackendConfig, default_env: str | None = None) -> bool | None:
    """For doctor: True/False when a key is expected, None when none is."""
    var = config.api_key_env or default_env
    if not var:
        return None
    return bool(os.environ.get(var, "").strip())


def option(name: str, request_value: Any, config: BackendConfig) -> Any:
    """A generation option: the request's (per step) wins over the backend's."""
    return request_value if request_value is not None else config.options.get(name)


def streaming(config: BackendConfig) -> bool:
    """The backend's `stream` (default true): false asks for one JSON answer instead."""
    return config.extra.get("stream") is not False


def api_options(config: BackendConfig) -> dict[str, Any]:
    """The backend's `options` beyond lok's own (temperature, seed, max_tokens, system,
    num_ctx): the API parameters config checking let through, sent as they are."""
    from lokfile.backends.keys import OPTION_KEYS

    return {k: v for k, v in config.options.items() if k not in OPTION_KEYS}


# --------------------------------------------------------------------------
# Failure classification
# --------------------------------------------------------------------------


_UNITS = {
    "": 1.0, "s": 1.0, "sec": 1.0, "secs": 1.0, "second": 1.0, "seconds": 1.0,
    "ms": 0.001, "millisecond": 0.001, "milliseconds": 0.001,
    "m": 60.0, "min": 60.0, "mins": 60.0, "minute": 60.0, "minutes": 60.0,
    "h": 3600.0, "hour": 3600.0, "hours": 3600.0,
}
_PART = re.compile(r"(\d+(?:\.\d+)?)\s*([a-z]*)", re.IGNORECASE)
# OpenAI "Please try again in 1.5s" / "in 6m0s" / "in 20ms"; LiteLLM "Try again in 7 seconds";
# Gemini "Please retry in 42.1s"
_SENTENCE = re.compile(
    r"(?:try again|retry)\s+in\s+(?:about\s+)?((?:\d+(?:\.\d+)?\s*[a-z]*\s*)+)", re.IGNORECASE
)
GATEWAY_PREFIX = "llm_provider-"  # LiteLLM passes its upstream's headers on under this prefix


def parse_duration(text: str) -> float | None:
    """Seconds in "60", "1.5s", "20ms", "6m0s", "7 seconds"; None if it is not a duration."""
    text = text.strip()
    total, end = 0.0, 0
    for match in _PART.finditer(text):
        if text[end : match.start()].strip() or match.group(2).lower() not in _UNITS:
            return None
        total += float(match.group(1)) * _UNITS[match.group(2).lower()]
        end = match.end()
    return total if end and not text[end:].strip() else None


def _header_wait(lowered: Mapping[str, str], prefix: str = "") -> float | None:
    """retry-after-ms, else retry-after (seconds or an HTTP date), under `prefix`."""
    ms = parse_duration(lowered.get(f"{prefix}retry-after-ms", "") or "x")
    if ms is not None:
        return ms / 1000
    value = lowered.get(f"{prefix}retry-after", "").strip()
    if not value:
        return None
    seconds = parse_duration(value)
    if seconds is not None:
        return seconds
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _reset_wait(lowered: Mapping[str, str], prefix: str = "") -> float | None:
    """OpenAI's x-ratelimit-reset-{requests,tokens}, for the limits that are used up."""
    waits = []
    for kind in ("requests", "tokens"):
        if lowered.get(f"{prefix}x-ratelimit-remaining-{kind}", "").strip() == "0":
            wait = parse_duration(lowered.get(f"{prefix}x-ratelimit-reset-{kind}", "") or "x")
            if wait is not None:
                waits.append(wait)
    return max(waits) if waits else None


def parse_retry_after(headers: Mapping[str, str], body: str = "") -> float | None:
    """Seconds the server asks to wait, the longest of every hint it gave: Retry-After
    (seconds or HTTP date) and retry-after-ms, the same under a gateway's `llm_provider-`
    prefix, OpenAI's x-ratelimit-reset-* for a used-up limit, Gemini's retryDelay, and a
    "try again in N seconds" / "retry in Ns" sentence in the body (any case)."""
    lowered = {k.lower(): v for k, v in headers.items()}
    hints = [
        _header_wait(lowered),
        _header_wait(lowered, GATEWAY_PREFIX),
        _reset_wait(lowered),
        _reset_wait(lowered, GATEWAY_PREFIX),
    ]
    delay = re.search(r'"retryDelay"\s*:\s*"([\d.]+)s"', body)
    if delay:
        hints.append(float(delay.group(1)))
    for sentence in _SENTENCE.finditer(body):
        hints.append(parse_duration(sentence.group(1)))
    found = [max(0.0, h) for h in hints if h is not None]
    return max(found) if found else None


def error_message(body: str) -> str:
    """The human part of an error body (`error.message`, `error`, `message`), else its start."""
    try:
        doc = json.loads(body)
    except ValueError:
        doc = None
    if isinstance(doc, dict):
        err = doc.get("error", doc)
        if isinstance(err, dict):
            for key in ("message", "detail", "type"):
                if isinstance(err.get(key), str) and err[key]:
                    return str(err[key])
        elif isinstance(err, str) and err:
            return err
        if isinstance(doc.get("message"), str):
            return str(doc["message"])
    text = " ".join(body.split())
    return text[:200] if text else "(empty body)"


def classify_status(
    status: int,
    body: str,
    headers: Mapping[str, str],
    secrets: Iterable[str | None] = (),
    where: str = "",
) -> BackendError:
    """The BackendError for a non-2xx answer; `where` ("POST http://…") leads the message."""
    detail = redact(error_message(body), secrets)
    message = f"{where}: HTTP {status}: {detail}" if where else f"HTTP {status}: {detail}"
    lowered = body.lower()
    if status == 402 or (status == 429 and any(m in lowered for m in _QUOTA_MARKERS)):
        return BackendError(ErrorKind.QUOTA, message)
    if status == 429 or status in (503, 529) or any(m in lowered for m in _OVERLOAD_MARKERS):
        wait = parse_retry_after(headers, body)
        if wait is not None:
            message += f" (the server asks to wait {wait:g}s)"
        kind = ErrorKind.RATE_LIMIT if status == 429 else ErrorKind.OVERLOAD
        return BackendError(kind, message, wait)
    if status in (401, 403):
        return BackendError(ErrorKind.AUTH, message)
    if status in (408, 504):
        return BackendError(ErrorKind.TIMEOUT, message)
    return BackendError(ErrorKind.FAILED, message)


def classify_transport(
    exc: httpx.HTTPError, url: str, secrets: Iterable[str | None] = (), method: str = "POST"
) -> BackendError:
    """The BackendError for a failure below HTTP (connect, read, cut stream)."""
    import httpx

    detail = redact(str(exc) or type(exc).__name__, secrets)
    if isinstance(exc, httpx.ConnectError):
        return BackendError(ErrorKind.NETWORK, f"cannot connect to {url} ({method}): {detail}")
    if isinstance(exc, httpx.ConnectTimeout):
        return BackendError(ErrorKind.NETWORK, f"{method} {url}: connecting timed out")
    if isinstance(exc, httpx.TimeoutException):
        return BackendError(
            ErrorKind.TIMEOUT, f"{method} {url} stopped answering ({type(exc).__name__})"
        )
    return BackendError(ErrorKind.NETWORK, f"{method} {url}: connection lost: {detail}")


_LOCK = threading.Lock()
_CLIENTS: dict[bool, httpx.Client] = {}
_TLS: list[ssl.SSLContext] = []


def _forget_inherited_clients() -> None:
    _CLIENTS.clear()  # a forked worker must not share its parent's pooled sockets


os.register_at_fork(after_in_child=_forget_inherited_clients)


def tls_context() -> ssl.SSLContext:
    """One verifying TLS context per process, built once (loading CA certificates costs ~50 ms)."""
    with _LOCK:
        if not _TLS:
            _TLS.append(ssl.create_default_context())
        return _TLS[0]


def client_for(url: str) -> httpx.Client:
    """The process's shared client for this URL's scheme: connections are pooled and kept
    alive across queries, and the TLS context is built only if an https URL is used."""
    import httpx

    https = url.startswith("https:")
    with _LOCK:
        found = _CLIENTS.get(https)
    if found is not None:
        return found
    # plain http needs no certificates: skip loading them for loopback and LAN servers
    verify: ssl.SSLContext | bool = tls_context() if https else False
    made = httpx.Client(
        verify=verify, limits=httpx.Limits(max_connections=256, max_keepalive_connections=64)
    )
    with _LOCK:
        return _CLIENTS.setdefault(https, made)


# --------------------------------------------------------------------------
# Streaming
# --------------------------------------------------------------------------


class StreamReader(Protocol):
    """Consumes a response body, line by line or as one JSON document, and builds the answer."""

    def line(self, text: str) -> None:
        """One line of the body; raise BackendError for an in-stream error."""

    def document(self, doc: Any) -> None:
        """The whole body, one JSON document (a server that answered a streamed request
        in one piece, or `stream = false`); raise BackendError if it is not an answer."""

    @property
    def complete(self) -> bool:
        """True once the protocol's end marker was seen (reading may stop)."""

    @property
    def started(self) -> bool:
        """True once any part of the protocol was read (a cut stream, not a foreign body)."""

    def answer(self) -> Answer:
        """The answer, once the stream ended with `complete` true."""


class SSEParser:
    """Server-sent events: `event:`/`data:` lines, dispatched at each blank line."""

    def __init__(self, on_event: Callable[[str, str], None]) -> None:
        self._on_event = on_event
        self._event = ""
        self._data: list[str] = []

    def feed(self, line: str) -> None:
        """One line of the stream (without its newline)."""
        if not line.strip():
            self.flush()
            return
        if line.startswith(":"):
            return  # a comment / keep-alive
        field, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if field == "event":
            self._event = value
        elif field == "data":
            self._data.append(value)

    def flush(self) -> None:
        """Dispatch a pending event (also called at end of stream)."""
        if self._data or self._event:
            event, data = self._event, "\n".join(self._data)
            self._event, self._data = "", []
            self._on_event(event, data)


def parse_json_line(text: str, what: str) -> Any:
    """JSON from one stream line, or BAD_RESPONSE naming what was expected."""
    try:
        return json.loads(text)
    except ValueError:
        raise BackendError(ErrorKind.BAD_RESPONSE, f"{what}: not JSON: {text[:120]!r}") from None


def post_stream(
    url: str,
    body: dict[str, Any],
    headers: Mapping[str, str],
    new_reader: Callable[[], StreamReader],
    timeout_s: float | None,
    secrets: Iterable[str | None] = (),
    retries: int = 0,
    notify: Callable[[str], None] | None = None,
) -> Answer:
    """POST `body` as JSON and feed the streamed reply to a fresh reader, within
    `timeout_s` overall; a transient failure is tried again up to `retries` times
    (lokfile.backends.retrying), each wait told to `notify`."""
    from lokfile.backends import retrying

    secret_list = list(secrets)

    def once(left: float | None) -> Answer:
        return _post_once(url, body, headers, new_reader(), left, secret_list)

    return retrying.call(once, timeout_s, retries, notify)


def _post_once(
    url: str,
    body: dict[str, Any],
    headers: Mapping[str, str],
    reader: StreamReader,
    timeout_s: float | None,
    secret_list: list[str | None],
) -> Answer:
    """One POST and its reply (a stream, or one JSON document), within `timeout_s`."""
    cancelled = threading.Event()
    where = f"POST {url}"

    import httpx

    def exchange() -> Answer:
        timeout = httpx.Timeout(
            timeout_s, connect=min(CONNECT_TIMEOUT_S, timeout_s or CONNECT_TIMEOUT_S)
        )
        first: list[str] = []  # the body's first lines, to quote one lok cannot read
        ctype = ""
        try:
            with client_for(url).stream(
                "POST", url, json=body, headers=dict(headers), timeout=timeout
            ) as response:
                if response.status_code >= 400:
                    response.read()
                    raise classify_status(
                        response.status_code, response.text, response.headers, secret_list, where
                    )
                ctype = content_type(response.headers.get("content-type", ""))
                if is_json(ctype):
                    response.read()
                    first.append(response.text[:200])
                    read_whole(response.text, reader)
                else:
                    for text in response.iter_lines():
                        if cancelled.is_set():
                            break
                        if len(first) < 3:
                            first.append(text)
                        if reader.complete:
                            continue  # read to the end of the body, so the connection is reused
                        reader.line(text)
                    else:
                        if not reader.complete:
                            reader.line("")  # flush a final SSE event with no blank line after it
        except httpx.HTTPError as exc:
            if not reader.complete:  # after the end marker, a dirty close loses nothing
                raise classify_transport(exc, url, secret_list) from None
        return conclude(reader, where, ctype, first, secret_list)

    def exchange_named() -> Answer:
        try:
            return exchange()
        except BackendError as exc:
            raise named(exc, url, where) from None

    return within_deadline(exchange_named, timeout_s, cancelled, f"{where} gave no complete answer")


def content_type(value: str) -> str:
    """The media type of a Content-Type header, lower case, without parameters."""
    return value.split(";")[0].strip().lower()


def is_json(ctype: str) -> bool:
    """Is this media type one JSON document (not a stream of lines)?"""
    return ctype == "application/json" or ctype.endswith("+json")


def conclude(
    reader: StreamReader, where: str, ctype: str, first: list[str], secret_list: list[str | None]
) -> Answer:
    """The answer once the body has ended: a stream cut before its end marker is NETWORK
    (transient), a body that never spoke the protocol BAD_RESPONSE quoting its start
    (`first`: its first lines)."""
    if not reader.complete:
        if reader.started:
            raise BackendError(
                ErrorKind.NETWORK, f"{where} closed the stream before the answer was complete"
            )
        shown = redact(" ".join(" ".join(first).split())[:160], secret_list)
        raise BackendError(
            ErrorKind.BAD_RESPONSE,
            f"{where} answered with nothing lok can read "
            f"({ctype or 'no content type'}): {shown!r}",
        )
    return reader.answer()


def named(exc: BackendError, url: str, where: str) -> BackendError:
    """`exc` saying which request it answered (what a reader found in a body does not)."""
    if url in exc.message:
        return exc
    return BackendError(exc.kind, f"{where}: {exc.message}", exc.retry_after)


def read_whole(text: str, reader: StreamReader) -> None:
    """A body labelled JSON: one document, or (when it does not parse as one) lines of a
    stream under the wrong label."""
    try:
        doc = json.loads(text)
    except ValueError:
        for line in text.splitlines():
            if reader.complete:
                return
            reader.line(line)
        if not reader.complete:
            reader.line("")
        return
    reader.document(doc)


def within_deadline(
    fn: Callable[[], T], timeout_s: float | None, cancelled: threading.Event, what: str
) -> T:
    """Run `fn` in a helper thread and give up at `timeout_s`, whatever it is blocked on.

    httpx timeouts bound each read, not the whole exchange; a server that
    trickles bytes would outlive lok's deadline without this. On timeout the
    helper is told to stop and left to finish on its own (it is a daemon and
    its reads time out too).
    """
    if timeout_s is None:
        return fn()
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # handed to the caller's thread below
            box["error"] = exc

    worker = threading.Thread(target=target, name="lok-http", daemon=True)
    worker.start()
    worker.join(timeout_s)
    if worker.is_alive():
        cancelled.set()
        raise BackendError(ErrorKind.TIMEOUT, f"{what} within {timeout_s:g}s")
    if "error" in box:
        raise box["error"]
    value: T = box["value"]
    return value


def get_json(
    url: str, headers: Mapping[str, str] | None = None, timeout_s: float = HEALTH_TIMEOUT_S
) -> tuple[int, Any]:
    """GET `url` quickly for a health check: (status, parsed JSON or None)."""
    import httpx

    response = client_for(url).get(
        url, headers=dict(headers or {}), timeout=httpx.Timeout(timeout_s)
    )
    try:
        return response.status_code, response.json()
    except ValueError:
        return response.status_code, None


# a server without this endpoint: the listing is unsupported, the server is not down
LISTING_UNSUPPORTED = (404, 405, 501)


def reachability(
    url: str, headers: Mapping[str, str], secrets: Iterable[str | None] = ()
) -> tuple[Health | None, Any, str]:
    """GET a cheap endpoint (the model listing): (a not-ready Health, None, "") when the
    server cannot be reached or refuses; (None, None, note) when it has no such endpoint;
    else (None, JSON body, "")."""
    import httpx

    secret_list = list(secrets)
    try:
        status, doc = get_json(url, headers)
    except httpx.HTTPError as exc:
        err = classify_transport(exc, url, secret_list, "GET")
        return Health(ready=False, found=False, detail=err.message), None, ""
    if status in LISTING_UNSUPPORTED:
        return None, None, f"GET {url}: HTTP {status}, so the server lists no models"
    if status >= 400:
        text = json.dumps(doc) if doc is not None else ""
        err = classify_status(status, text, {}, secret_list, f"GET {url}")
        return Health(ready=False, found=True, detail=err.message), None, ""
    return None, doc, ""
