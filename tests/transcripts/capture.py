"""Capture one HTTP exchange from a running server, byte for byte.

    python -m tests.transcripts.capture NAME URL [BODY-JSON] [-H 'Name: value' ...] [--note TEXT]

Sends one request (`Connection: close`, so the body ends where the socket
does) and writes what came back, status line, headers and body bytes as they
were on the wire (chunked framing included), to `tests/transcripts/NAME.http`;
the request, the server and the note go to `index.json` beside it. The tests
replay these files with `tests.servers.replay` for what a live server cannot be
made to do on demand. How each one was made: tests/transcripts/README.md.
"""

from __future__ import annotations

import argparse
import json
import socket
from pathlib import Path
from urllib.parse import urlsplit

HERE = Path(__file__).parent


def exchange(url: str, body: bytes | None, headers: dict[str, str]) -> bytes:
    """The raw bytes a server answers one request with."""
    parts = urlsplit(url)
    method = "POST" if body is not None else "GET"
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    lines = [f"{method} {target} HTTP/1.1", f"Host: {parts.netloc}", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    if body is not None:
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    request = ("\r\n".join(lines) + "\r\n\r\n").encode() + (body or b"")
    with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 80), 120) as sock:
        sock.sendall(request)
        chunks = []
        while True:
            data = sock.recv(65536)
            if not data:
                break
            chunks.append(data)
    return b"".join(chunks)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("name")
    parser.add_argument("url")
    parser.add_argument("body", nargs="?")
    parser.add_argument("-H", dest="headers", action="append", default=[])
    parser.add_argument("--server", default="")
    parser.add_argument("--note", default="")
    args = parser.parse_args()
    headers = dict(h.split(": ", 1) for h in args.headers)
    body = args.body.encode() if args.body is not None else None
    raw = exchange(args.url, body, headers)
    (HERE / f"{args.name}.http").write_bytes(raw)
    index_file = HERE / "index.json"
    index = json.loads(index_file.read_text()) if index_file.exists() else {}
    shown = {k: ("***" if k.lower() in ("authorization", "x-api-key") else v)
             for k, v in headers.items()}
    index[args.name] = {
        "server": args.server,
        "request": {
            "method": "POST" if body is not None else "GET",
            "path": urlsplit(args.url).path,
            "headers": shown,
            "body": json.loads(body) if body else None,
        },
        "note": args.note,
    }
    index_file.write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
    print(raw.split(b"\r\n", 1)[0].decode(), f"({len(raw)} bytes) -> {args.name}.http")


if __name__ == "__main__":
    main()
