"""A loopback HTTP server that answers with captured wire transcripts, byte for byte.

    with ReplayServer({"/v1/chat/completions": ["litellm-rpm-429", "litellm-rpm-ok"]}) as srv:
        ...  # the first POST gets the 429 exactly as LiteLLM sent it, the next the 200

Each path has a queue of transcript names (tests/transcripts/NAME.http: status line,
headers and body as they were on the wire, captured with `Connection: close`); the
last one repeats once the queue is used up. A path with no queue answers 404. Every
request is recorded (method, path, headers, parsed body, time.monotonic() when it
arrived), so a test can count calls and check how long lok waited between them.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TRANSCRIPTS = Path(__file__).resolve().parent.parent / "transcripts"


def transcript(name: str) -> bytes:
    """The raw bytes of tests/transcripts/NAME.http."""
    return (TRANSCRIPTS / f"{name}.http").read_bytes()


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: Any
    at: float  # time.monotonic() when the request had arrived whole


class ReplayServer:
    """See the module docstring."""

    def __init__(self, routes: dict[str, list[str]]) -> None:
        self.routes = {path: list(names) for path, names in routes.items()}
        self.seen: list[Seen] = []
        self._lock = threading.Lock()
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._stopped = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> ReplayServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopped = True
        self._sock.close()

    def calls(self, path: str) -> list[Seen]:
        with self._lock:
            return [s for s in self.seen if s.path == path]

    def _serve(self) -> None:
        while not self._stopped:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                piece = conn.recv(65536)
                if not piece:
                    return
                data += piece
            head, _, rest = data.partition(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, target, _ = lines[0].split(" ", 2)
            headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
            length = int({k.lower(): v for k, v in headers.items()}.get("content-length", 0))
            while len(rest) < length:
                piece = conn.recv(65536)
                if not piece:
                    break
                rest += piece
            body = json.loads(rest) if rest else None
            path = target.split("?")[0]
            with self._lock:
                self.seen.append(Seen(method, path, headers, body, time.monotonic()))
                queue = self.routes.get(path)
                name = (queue.pop(0) if len(queue) > 1 else queue[0]) if queue else None
            if name is None:
                conn.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            else:
                conn.sendall(transcript(name))
