"""The asyncio transport of the HTTP backends: many calls at once on one event loop.

    executors/httplane.py ── post(prepared, pool, notify) ──> Pool: kept-alive
      (one loop, one thread)                                  connections per host

It makes the same call as httpwire.post_stream, the threaded transport of the
worker processes: the same body and headers (HTTPBackend.prepare), the same
readers, the same failure classes and messages, the same retries
(retrying.call_async) and one deadline over everything. Only the way bytes
move differs: a small HTTP/1.1 client on asyncio streams — a JSON POST out;
a Content-Length, chunked or read-to-close body back; keep-alive; TLS with
httpwire's context — with no httpx to import and no thread per call, so a
thousand calls in flight cost one thread. It never goes through a proxy: a
URL the environment sends through one is the threaded transport's
(`direct` says which).
"""

from __future__ import annotations

import asyncio
import codecs
import json
import os
import re
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from urllib.parse import SplitResult, urlsplit

from lokfile.backends import httpwire, retrying
from lokfile.backends.base import Answer, BackendError, ErrorKind
from lokfile.backends.httpbase import HTTPBackend, Prepared
from lokfile.backends.retrying import Notify

IDLE_PER_HOST = 256  # kept-alive connections remembered per host
_READ = 64 * 1024
_NEWLINE = re.compile(r"\r\n|\r|\n")  # httpx's line endings, so both transports agree
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")  # a header name (RFC 9110 token)
_Key = tuple[str, str, int]  # scheme, host, port


class _Lost(Exception):
    """The connection failed below HTTP: refused, reset, cut, or not speaking HTTP."""


def direct(url: str) -> bool:
    """Can `url` be sent straight to its host (no proxy named for it in the
    environment), over http or https?"""
    split = urlsplit(url)
    if split.scheme not in ("http", "https") or not split.hostname:
        return False
    if sys.platform not in ("darwin", "win32") and not any(
        name.lower().endswith("_proxy") for name in os.environ
    ):
        return True  # on Linux urllib looks only at *_proxy variables: none, no proxy
    import urllib.request

    proxies = urllib.request.getproxies()
    if not (proxies.get(split.scheme) or proxies.get("all")):
        return True
    return bool(urllib.request.proxy_bypass(split.hostname))


def url_of(backend: object) -> str | None:
    """The server URL of a backend this transport can send for (an HTTP backend: it
    has `prepare`), else None."""
    return backend.url if isinstance(backend, HTTPBackend) else None


class _Conn:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    def usable(self) -> bool:
        return not self.reader.at_eof() and not self.writer.is_closing()

    def close(self) -> None:
        self.writer.close()


class Pool:
    """Idle kept-alive connections per (scheme, host, port), for one event loop."""

    def __init__(self) -> None:
        self._idle: dict[_Key, list[_Conn]] = {}

    async def connect(self, key: _Key, timeout_s: float) -> tuple[_Conn, bool]:
        """A connection to `key` and whether it is a reused one; raises _Lost when it
        cannot be made, TimeoutError when it takes longer than `timeout_s`."""
        idle = self._idle.get(key)
        while idle:
            conn = idle.pop()
            if conn.usable():
                return conn, True
            conn.close()
        scheme, host, port = key
        tls = httpwire.tls_context() if scheme == "https" else None
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(
                    host, port, ssl=tls, server_hostname=host if tls else None, limit=_READ
                ),
                timeout_s,
            )
        except OSError as exc:  # refused, unreachable, no such host, TLS failure
            raise _Lost(str(exc) or type(exc).__name__) from None
        return _Conn(reader, writer), False

    def release(self, key: _Key, conn: _Conn) -> None:
        """Keep `conn` for the next call to the same host."""
        idle = self._idle.setdefault(key, [])
        if len(idle) < IDLE_PER_HOST and conn.usable():
            idle.append(conn)
        else:
            conn.close()

    def close(self) -> None:
        """Close every idle connection."""
        for idle in self._idle.values():
            for conn in idle:
                conn.close()
        self._idle.clear()


async def post(
    p: Prepared,
    pool: Pool,
    notify: Notify | None = None,
    wait: Callable[[float], Awaitable[None]] | None = None,
) -> Answer:
    """POST `p.body` and read the reply into a fresh reader, transient failures asked
    again (each wait told to `notify`, and spent in `wait(seconds)` when given), all
    within `p.timeout_s`."""
    where = f"POST {p.url}"
    secrets = list(p.secrets)
    split = urlsplit(p.url)
    payload = json.dumps(p.body, ensure_ascii=False, separators=(",", ":")).encode()
    head = _request_head(split, p.headers, len(payload))

    async def attempt(left: float | None) -> Answer:
        exchange = _exchange(split, head + payload, p, pool, where, secrets)
        if left is None:
            return await exchange
        try:
            return await asyncio.wait_for(exchange, left)
        except asyncio.TimeoutError:
            raise BackendError(
                ErrorKind.TIMEOUT, f"{where} gave no complete answer within {left:g}s"
            ) from None

    return await retrying.call_async(attempt, p.timeout_s, p.retries, notify, wait)


def _request_head(split: SplitResult, headers: dict[str, str], length: int) -> bytes:
    """The request line and headers of a JSON POST (the backend's headers win)."""
    target = (split.path or "/") + (f"?{split.query}" if split.query else "")
    host = split.netloc.rpartition("@")[2]
    fields = {
        "host": ("Host", host),
        "accept": ("Accept", "*/*"),
        "accept-encoding": ("Accept-Encoding", "identity"),
        "connection": ("Connection", "keep-alive"),
        "user-agent": ("User-Agent", "lok"),
        "content-type": ("Content-Type", "application/json"),
    }
    for name, value in headers.items():
        if not _TOKEN.match(name) or any(c in value for c in "\r\n\0"):
            raise BackendError(
                ErrorKind.FAILED, f"header {name!r}: not a valid HTTP header name or value"
            )
        fields[name.lower()] = (name, value)
    fields["content-length"] = ("Content-Length", str(length))
    lines = [f"POST {target} HTTP/1.1", *(f"{n}: {v}" for n, v in fields.values()), "", ""]
    return "\r\n".join(lines).encode("utf-8")


async def _exchange(
    split: SplitResult,
    request: bytes,
    p: Prepared,
    pool: Pool,
    where: str,
    secrets: list[str | None],
) -> Answer:
    """One POST and its reply, as httpwire._post_once reads it."""
    scheme = split.scheme
    key = (scheme, split.hostname or "", split.port or (443 if scheme == "https" else 80))
    reader = p.new_reader()
    connect_s = min(httpwire.CONNECT_TIMEOUT_S, p.timeout_s or httpwire.CONNECT_TIMEOUT_S)
    for fresh in (False, True):
        try:
            conn, reused = await pool.connect(key, connect_s)
        except _Lost as exc:
            detail = httpwire.redact(str(exc), secrets)
            raise BackendError(
                ErrorKind.NETWORK, f"cannot connect to {p.url} (POST): {detail}"
            ) from None
        except asyncio.TimeoutError:
            raise BackendError(ErrorKind.NETWORK, f"{where}: connecting timed out") from None
        try:
            conn.writer.write(request)
            await conn.writer.drain()
            status, headers = await _read_head(conn.reader)
            break
        except (OSError, _Lost, asyncio.IncompleteReadError) as exc:
            conn.close()
            if reused and not fresh:
                continue  # a kept-alive connection the server had closed: once more, anew
            raise _lost(where, exc, secrets) from None
    body = _Body(conn.reader, status, headers)
    try:
        return await _read_reply(body, status, headers, reader, where, secrets)
    except BackendError as exc:
        raise httpwire.named(exc, p.url, where) from None
    finally:
        if body.clean and headers.get("connection", "").lower() != "close":
            pool.release(key, conn)
        else:
            conn.close()


async def _read_reply(
    body: _Body,
    status: int,
    headers: dict[str, str],
    reader: httpwire.StreamReader,
    where: str,
    secrets: list[str | None],
) -> Answer:
    first: list[str] = []  # the body's first lines, to quote one lok cannot read
    ctype = httpwire.content_type(headers.get("content-type", ""))
    try:
        if status >= 400:
            text = (await body.read()).decode("utf-8", "replace")
            raise httpwire.classify_status(status, text, headers, secrets, where)
        if httpwire.is_json(ctype):
            text = (await body.read()).decode("utf-8", "replace")
            first.append(text[:200])
            httpwire.read_whole(text, reader)
        else:
            lines = _Lines()
            async for chunk in body.chunks():
                for text in lines.feed(chunk):
                    if len(first) < 3:
                        first.append(text)
                    if not reader.complete:  # else read on to the end: the connection is reused
                        reader.line(text)
            for text in lines.end():
                if not reader.complete:
                    reader.line(text)
            if not reader.complete:
                reader.line("")  # flush a final SSE event with no blank line after it
    except (OSError, _Lost, asyncio.IncompleteReadError) as exc:
        if not reader.complete:  # after the end marker, a dirty close loses nothing
            raise _lost(where, exc, secrets) from None
    return httpwire.conclude(reader, where, ctype, first, secrets)


def _lost(where: str, exc: BaseException, secrets: list[str | None]) -> BackendError:
    if isinstance(exc, asyncio.IncompleteReadError):
        detail = "the server closed the connection in the middle of a message"
    else:
        detail = httpwire.redact(str(exc) or type(exc).__name__, secrets)
    return BackendError(ErrorKind.NETWORK, f"{where}: connection lost: {detail}")


async def _read_head(stream: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    """The status and headers (names in lower case) of the final answer (1xx skipped)."""
    while True:
        line = await _line(stream)
        if not line:
            raise _Lost("the server closed the connection without answering")
        version, _, rest = line.decode("latin-1").partition(" ")
        code = rest[:3]
        if not version.startswith("HTTP/1.") or not code.isdigit():
            raise _Lost(f"not an HTTP/1.1 answer: {line[:80]!r}")
        headers: dict[str, str] = {}
        while True:
            raw = await _line(stream)
            if not raw:
                raise _Lost("the server closed the connection in the middle of its headers")
            text = raw.decode("latin-1").rstrip("\r\n")
            if not text:
                break
            name, _, value = text.partition(":")
            name = name.strip().lower()
            value = value.strip()
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        if not 100 <= int(code) < 200:
            return int(code), headers


async def _line(stream: asyncio.StreamReader) -> bytes:
    try:
        return await stream.readline()
    except ValueError:  # longer than the stream's limit
        raise _Lost("a header line longer than 64 KiB") from None


class _Body:
    """A reply's body as its framing says (chunked, Content-Length, or to the close);
    `clean` once it was read to its end and the connection may carry the next call."""

    def __init__(self, stream: asyncio.StreamReader, status: int, headers: dict[str, str]):
        self.stream = stream
        self.chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        length = headers.get("content-length", "").split(",")[0].strip()
        self.length = int(length) if length.isdigit() else None
        if status in (204, 304):
            self.length = 0
        self.clean = False

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body's bytes as they arrive."""
        if self.chunked:
            while True:
                size_line = await _line(self.stream)
                try:
                    size = int(size_line.split(b";")[0].strip(), 16)
                except ValueError:
                    raise _Lost(f"a bad chunk size {size_line[:40]!r}") from None
                if size == 0:
                    while (await _line(self.stream)).strip():
                        pass  # trailers
                    self.clean = True
                    return
                data = await self.stream.readexactly(size)
                await self.stream.readexactly(2)  # the chunk's CRLF
                yield data
        elif self.length is not None:
            left = self.length
            while left > 0:
                data = await self.stream.read(min(left, _READ))
                if not data:
                    raise _Lost("the server closed the connection before the end of the body")
                left -= len(data)
                yield data
            self.clean = True
        else:
            while data := await self.stream.read(_READ):
                yield data  # to the close: this connection carries nothing more

    async def read(self) -> bytes:
        """The whole body."""
        return b"".join([chunk async for chunk in self.chunks()])


class _Lines:
    """UTF-8 bytes in, whole lines out (split at \\r\\n, \\n or \\r, as httpx does)."""

    def __init__(self) -> None:
        self._decode = codecs.getincrementaldecoder("utf-8")("replace").decode
        self._rest = ""

    def feed(self, data: bytes) -> list[str]:
        text = self._rest + self._decode(data)
        held = ""
        if text.endswith("\r"):  # its \n may come with the next piece
            text, held = text[:-1], "\r"
        lines = _NEWLINE.split(text)
        self._rest = lines.pop() + held
        return lines

    def end(self) -> list[str]:
        text = self._rest + self._decode(b"", True)
        self._rest = ""
        if not text:
            return []
        lines = _NEWLINE.split(text)
        if lines[-1] == "":
            lines.pop()
        return lines
