"""A loopback server that speaks the LLM wire protocols lok's backends use.

One `ThreadingHTTPServer` on 127.0.0.1 (ephemeral port) answering:

    POST /v1/messages                         Anthropic Messages (SSE or JSON)   claude CLI, anthropic
    POST /v1/responses                        OpenAI Responses (SSE)             codex CLI
    POST /v1/chat/completions                 OpenAI Chat Completions (SSE/JSON) openai
    POST /v1beta/models/M:streamGenerateContent?alt=sse, …:generateContent   gemini CLI
    POST /api/chat, /api/generate             Ollama (NDJSON stream or JSON)     ollama
    GET  /api/tags, /api/version, /v1/models, /v1beta/models, HEAD /

The reply is `echo: <last line of the prompt>` unless the prompt holds a
directive (several may be combined):

    <<reply:TEXT>>        answer exactly TEXT
    <<fail:STATUS>>       answer with that HTTP status in the dialect's error shape
                          (429 carries Retry-After = server.retry_after); `quota` = a
                          billing 429; STATUSxN fails only the first N such calls
    <<stream-error>>      start streaming, then send the dialect's in-stream error
    <<die>>               start streaming, then drop the connection mid-body
    <<hang>>              accept the request and never answer
    <<hold>>              wait until the test calls `server.release.set()`, then answer
    <<slow:SECONDS>>      wait before answering
    <<trickle:SECONDS>>   wait after each piece of a streamed body
    <<usage:in=N,out=N,read=N,write=N>>
                          report these token counts in the dialect's own usage fields
                          (`in` counts every prompt token, `read`/`write` the cached parts
                          of it); default: in=7, out=the words of the reply, no cache

`latency` delays every model call; while `hold` is clear, model calls wait for it
to be set (a test holds every answer back until it is ready); `requests` records
every request (method, path, headers, parsed body) so tests can count calls and
check what arrived; `inflight` is how many model calls are being answered now,
`max_inflight` the most there ever were at once (the calls that hold count: they
are in flight).
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

DIRECTIVE = re.compile(r"<<([a-z-]+)(?::([^>]*))?>>")
MODEL_PATHS = (
    "/messages",
    "/responses",
    "/chat/completions",
    "enerateContent",
    "/api/chat",
    "/api/generate",
)


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: Any
    time: float = field(default_factory=time.time)


def _text(content: Any) -> str:
    """The text in the many content shapes (string, blocks, parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, dict):
        for key in ("text", "content"):
            if key in content:
                return _text(content[key])
        return ""
    if isinstance(content, list):
        return "\n".join(t for t in (_text(c) for c in content) if t)
    return ""


def prompt_of(dialect: str, body: dict[str, Any]) -> str:
    """The user's prompt in a request body: the last user turn, minus CLI preambles."""
    if dialect == "generate":
        return str(body.get("prompt") or "")
    if dialect == "gemini":
        users = [c for c in body.get("contents", []) if c.get("role", "user") == "user"]
        parts = [
            p.get("text", "") for p in (users[-1].get("parts", []) if users else []) if "text" in p
        ]
        return parts[-1] if parts else ""
    if dialect == "responses":
        items = body.get("input")
        if isinstance(items, str):
            return items
        users = [i for i in items or [] if isinstance(i, dict) and i.get("role") == "user"]
        content = users[-1].get("content") if users else []
    else:
        users = [m for m in body.get("messages", []) if m.get("role") == "user"]
        content = users[-1].get("content") if users else ""
    if isinstance(content, list):
        # CLIs put context blocks (<system-reminder>, <environment_context>) before the prompt
        texts = [_text(b) for b in content if isinstance(b, dict)]
        plain = [t for t in texts if not t.lstrip().startswith("<")]
        return (plain or texts or [""])[-1]
    return _text(content)


def smallest_instance(schema: Any) -> Any:
    """A value matching a simple JSON schema (the CLIs' structured side calls)."""
    if not isinstance(schema, dict):
        return None
    if schema.get("enum"):
        return schema["enum"][0]
    kind = schema.get("type")
    kind = (kind[0] if isinstance(kind, list) else kind or "").lower()
    if kind == "object" or "properties" in schema:
        return {k: smallest_instance(v) for k, v in schema.get("properties", {}).items()}
    if kind == "array":
        return []
    if kind in ("integer", "number"):
        return schema.get("minimum", 1)
    if kind == "boolean":
        return False
    return "lok"


class _Listening(ThreadingHTTPServer):
    # dozens of clients connect at once (a fan-out): the default backlog of 5 would drop
    # their handshakes, as no real server's does
    request_queue_size = 256


class LLMServer:
    """The server; `with LLMServer() as srv:` starts it and stops it."""

    def __init__(
        self,
        latency: float = 0.0,
        retry_after: str = "1",
        tags: tuple[str, ...] = ("llama3.2:latest",),
    ):
        self.latency = latency
        self.retry_after = retry_after
        self.tags = tags
        self.requests: list[Recorded] = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.hold = threading.Event()
        self.hold.set()
        self._fail_counts: dict[str, int] = {}
        self.release = threading.Event()  # lets every <<hold>> call answer
        self.inflight = 0
        self.max_inflight = 0
        self._httpd = _Listening(("127.0.0.1", 0), _handler_for(self))
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def start(self) -> LLMServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> LLMServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def model_calls(self) -> list[Recorded]:
        """The requests that asked a model something (not health checks)."""
        with self.lock:
            return [
                r
                for r in self.requests
                if r.method == "POST" and any(p in r.path for p in MODEL_PATHS)
            ]

    def should_fail(self, spec: str) -> bool:
        """For `STATUSxN`: true for the first N calls with that directive."""
        match = re.fullmatch(r"(\w+)x(\d+)", spec)
        if not match:
            return True
        with self.lock:
            seen = self._fail_counts.get(spec, 0) + 1
            self._fail_counts[spec] = seen
        return seen <= int(match.group(2))


def _handler_for(server: LLMServer) -> type[BaseHTTPRequestHandler]:
    class Handler(_Handler):
        srv = server

    return Handler


class _Handler(BaseHTTPRequestHandler):
    srv: LLMServer
    protocol_version = "HTTP/1.1"
    trickle = 0.0
    counts: dict[str, int] = {}  # noqa: RUF012 (set per request: in, out, read, write)

    def log_message(self, format: str, *args: Any) -> None:
        pass

    # ----- output
    def _head(
        self,
        status: int,
        ctype: str,
        headers: dict[str, str] | None = None,
        length: int | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if length is None:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Content-Length", str(length))
        self.end_headers()

    def _json(self, status: int, doc: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(doc).encode()
        self._head(status, "application/json", headers, len(data))
        self.wfile.write(data)

    def _chunk(self, text: str) -> None:
        data = text.encode()
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()
        if self.trickle:
            time.sleep(self.trickle)

    def _end(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _sse(self, event: str | None, doc: Any) -> None:
        head = f"event: {event}\n" if event else ""
        self._chunk(f"{head}data: {doc if isinstance(doc, str) else json.dumps(doc)}\n\n")

    def _die(self) -> None:
        """Drop the connection in the middle of a chunked body."""
        self.wfile.flush()
        self.close_connection = True
        import socket

        self.connection.shutdown(socket.SHUT_RDWR)

    # ----- routing
    def _record(self, body: Any) -> None:
        with self.srv.lock:
            self.srv.requests.append(
                Recorded(self.command, self.path, dict(self.headers.items()), body)
            )

    def do_HEAD(self) -> None:
        self._record(None)
        self._head(200, "text/plain", length=0)

    def do_GET(self) -> None:
        self._record(None)
        path = urlsplit(self.path).path.rstrip("/")
        if path == "/api/tags":
            models = [
                {"name": t, "model": t, "size": 1, "digest": "0" * 64, "details": {}}
                for t in self.srv.tags
            ]
            return self._json(200, {"models": models})
        if path == "/api/version":
            return self._json(200, {"version": "0.0.0-loopback"})
        if path.endswith("/v1/models"):
            return self._json(
                200, {"object": "list", "data": [{"id": "loopback-model", "object": "model"}]}
            )
        if path.startswith("/v1beta/models"):
            return self._json(200, {"models": [{"name": "models/gemini-2.5-flash"}]})
        if path == "":
            return self._head(200, "text/plain", length=0)
        return self._json(404, {"error": {"message": f"no route GET {path}"}})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            body = {"_raw": raw[:200].decode("utf-8", "replace")}
        self._record(body)
        parts = urlsplit(self.path)
        path = parts.path
        dialect = _dialect(path)
        if dialect is None:
            return self._json(404, {"error": {"message": f"no route POST {path}"}})
        with self.srv.lock:
            self.srv.inflight += 1
            self.srv.max_inflight = max(self.srv.max_inflight, self.srv.inflight)
        try:
            self._answer(dialect, body, path, parse_qs(parts.query))
        except (BrokenPipeError, ConnectionResetError, OSError):
            pass
        finally:
            with self.srv.lock:
                self.srv.inflight -= 1

    def _answer(
        self, dialect: str, body: dict[str, Any], path: str, query: dict[str, list[str]]
    ) -> None:
        prompt = prompt_of(dialect, body)
        directives = {name: (arg or "") for name, arg in DIRECTIVE.findall(prompt)}
        self.srv.hold.wait(60)
        if self.srv.latency:
            time.sleep(self.srv.latency)
        if "slow" in directives:
            time.sleep(float(directives["slow"]))
        self.trickle = float(directives.get("trickle") or 0)
        if "hang" in directives:
            self.srv.stopping.wait(60)
            return
        if "hold" in directives:
            while not (self.srv.release.wait(0.05) or self.srv.stopping.is_set()):
                pass
        fail = directives.get("fail")
        if fail and self.srv.should_fail(fail):
            return self._error(dialect, fail.split("x")[0])
        text = directives["reply"] if "reply" in directives else _echo(prompt)
        self.counts = _counts(directives.get("usage"), text)
        schema = _wanted_schema(dialect, body)
        if schema is not None:
            text = json.dumps(smallest_instance(schema))
        stream = body.get("stream", dialect in ("ollama", "generate")) or "stream" in path.lower()
        mode = "die" if "die" in directives else "error" if "stream-error" in directives else ""
        answer = getattr(self, f"_{dialect}")
        answer(body, text, bool(stream), mode)

    # ----- errors in each dialect's shape
    def _error(self, dialect: str, spec: str) -> None:
        retry = {"Retry-After": self.srv.retry_after}
        status = 429 if spec == "quota" else int(spec)
        if dialect == "anthropic":
            etype = {
                401: "authentication_error",
                429: "rate_limit_error",
                529: "overloaded_error",
                503: "overloaded_error",
                500: "api_error",
            }.get(status, "invalid_request_error")
            message = (
                "You have reached your specified API usage limits."
                if spec == "quota"
                else f"loopback {etype}"
            )
            if status == 401:
                # real servers rarely do this; it lets tests check that lok redacts keys
                message = f"invalid x-api-key: {self.headers.get('x-api-key')}"
            error: dict[str, Any] = {"type": etype, "message": message}
            if spec == "quota":
                error["details"] = {"error_code": "enforced_spend_limit_reached"}
            return self._json(
                status,
                {"type": "error", "error": error},
                retry if status == 429 else None,
            )
        if dialect in ("chat", "responses"):
            code = (
                "insufficient_quota"
                if spec == "quota"
                else {
                    429: "rate_limit_exceeded",
                    401: "invalid_api_key",
                    503: "server_is_overloaded",
                }.get(status, "server_error")
            )
            message = (
                "You exceeded your current quota, please check your plan and billing details."
                if spec == "quota"
                else f"loopback {code}. Please try again in {self.srv.retry_after}s."
            )
            return self._json(
                status,
                {"error": {"message": message, "type": code, "code": code}},
                retry if status == 429 and spec != "quota" else None,
            )
        if dialect == "gemini":
            gstatus = {
                429: "RESOURCE_EXHAUSTED",
                503: "UNAVAILABLE",
                401: "UNAUTHENTICATED",
                500: "INTERNAL",
            }.get(status, "FAILED_PRECONDITION")
            err: dict[str, Any] = {
                "code": status,
                "status": gstatus,
                "message": f"loopback {gstatus}",
            }
            if status == 429:
                err["details"] = [
                    {
                        "@type": "type.googleapis.com/google.rpc.RetryInfo",
                        "retryDelay": f"{self.srv.retry_after}s",
                    }
                ]
            return self._json(status, {"error": err})
        message = {
            503: "server busy, please try again.  maximum pending requests exceeded",
            404: 'model "x" not found, try pulling it first',
        }.get(status, f"loopback error {status}")
        return self._json(status, {"error": message}, retry if status == 429 else None)

    # ----- dialects
    def _anthropic(self, body: dict[str, Any], text: str, stream: bool, mode: str) -> None:
        model = body.get("model", "loopback-claude")
        n = self.counts
        usage = {
            "input_tokens": n["in"] - n["read"] - n["write"],  # Anthropic counts cache apart
            "cache_read_input_tokens": n["read"],
            "cache_creation_input_tokens": n["write"],
            "output_tokens": 1,
        }
        if not stream:
            return self._json(
                200,
                {
                    "id": "msg_lb",
                    "type": "message",
                    "role": "assistant",
                    "model": model,
                    "content": [{"type": "text", "text": text}],
                    "stop_reason": "end_turn",
                    "usage": {**usage, "output_tokens": n["out"]},
                },
            )
        self._head(200, "text/event-stream")
        self._sse(
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "id": "msg_lb",
                    "type": "message",
                    "role": "assistant",
                    "model": model,
                    "content": [],
                    "stop_reason": None,
                    "usage": usage,
                },
            },
        )
        self._sse(
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
        )
        self._sse("ping", {"type": "ping"})
        for piece in _pieces(text):
            self._sse(
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "text_delta", "text": piece},
                },
            )
        if mode == "die":
            return self._die()
        if mode == "error":
            self._sse(
                "error",
                {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
            )
            return self._end()
        self._sse("content_block_stop", {"type": "content_block_stop", "index": 0})
        self._sse(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn"},
                "usage": {"output_tokens": n["out"]},
            },
        )
        self._sse("message_stop", {"type": "message_stop"})
        self._end()

    def _responses(self, body: dict[str, Any], text: str, stream: bool, mode: str) -> None:
        model = body.get("model", "loopback-model")
        rid, iid = "resp_" + uuid.uuid4().hex[:12], "msg_" + uuid.uuid4().hex[:12]
        item = {
            "id": iid,
            "type": "message",
            "status": "completed",
            "role": "assistant",
            "content": [{"type": "output_text", "text": text, "annotations": []}],
        }
        n = self.counts
        usage = {
            "input_tokens": n["in"],
            "input_tokens_details": {"cached_tokens": n["read"]},
            "output_tokens": n["out"],
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": n["in"] + n["out"],
        }
        base = {
            "id": rid,
            "object": "response",
            "created_at": int(time.time()),
            "model": model,
            "status": "in_progress",
            "output": [],
            "usage": None,
            "error": None,
        }
        self._head(200, "text/event-stream")
        seq = iter(range(1_000_000))

        def event(name: str, doc: dict[str, Any]) -> None:
            self._sse(name, {"type": name, "sequence_number": next(seq), **doc})

        event("response.created", {"response": base})
        event("response.in_progress", {"response": base})
        event(
            "response.output_item.added",
            {"output_index": 0, "item": {**item, "status": "in_progress", "content": []}},
        )
        event(
            "response.content_part.added",
            {
                "item_id": iid,
                "output_index": 0,
                "content_index": 0,
                "part": {"type": "output_text", "text": "", "annotations": []},
            },
        )
        for piece in _pieces(text):
            event(
                "response.output_text.delta",
                {
                    "item_id": iid,
                    "output_index": 0,
                    "content_index": 0,
                    "delta": piece,
                    "logprobs": [],
                },
            )
        if mode == "die":
            return self._die()
        if mode == "error":
            event(
                "response.failed",
                {
                    "response": {
                        **base,
                        "status": "failed",
                        "error": {"code": "server_error", "message": "loopback failure"},
                    }
                },
            )
            return self._end()
        event(
            "response.output_text.done",
            {"item_id": iid, "output_index": 0, "content_index": 0, "text": text, "logprobs": []},
        )
        event(
            "response.content_part.done",
            {"item_id": iid, "output_index": 0, "content_index": 0, "part": item["content"][0]},
        )
        event("response.output_item.done", {"output_index": 0, "item": item})
        event(
            "response.completed",
            {"response": {**base, "status": "completed", "output": [item], "usage": usage}},
        )
        self._end()

    def _chat(self, body: dict[str, Any], text: str, stream: bool, mode: str) -> None:
        model = body.get("model", "loopback-model")
        n = self.counts
        usage: dict[str, Any] = {
            "prompt_tokens": n["in"],
            "completion_tokens": n["out"],
            "total_tokens": n["in"] + n["out"],
        }
        if n["read"]:  # as servers without prompt caching do, sent only when there is some
            usage["prompt_tokens_details"] = {"cached_tokens": n["read"]}
        if not stream:
            return self._json(
                200,
                {
                    "id": "chatcmpl-lb",
                    "object": "chat.completion",
                    "model": model,
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": text},
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": usage,
                },
            )
        self._head(200, "text/event-stream")
        chunk = {"id": "chatcmpl-lb", "object": "chat.completion.chunk", "model": model}
        self._sse(
            None,
            {**chunk, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]},
        )
        for piece in _pieces(text):
            self._sse(None, {**chunk, "choices": [{"index": 0, "delta": {"content": piece}}]})
        if mode == "die":
            return self._die()
        if mode == "error":
            self._sse(
                None,
                {
                    "error": {
                        "message": "The server is overloaded (loopback).",
                        "type": "server_error",
                    }
                },
            )
            return self._end()
        self._sse(None, {**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
        if (body.get("stream_options") or {}).get("include_usage"):
            self._sse(None, {**chunk, "choices": [], "usage": usage})
        self._sse(None, "[DONE]")
        self._end()

    def _gemini(self, body: dict[str, Any], text: str, stream: bool, mode: str) -> None:
        model = "gemini-loopback"

        def doc(piece: str, last: bool) -> dict[str, Any]:
            cand: dict[str, Any] = {
                "content": {"parts": [{"text": piece}], "role": "model"},
                "index": 0,
            }
            out: dict[str, Any] = {"candidates": [cand], "modelVersion": model, "responseId": "lb"}
            if last:
                cand["finishReason"] = "STOP"
                n = self.counts
                out["usageMetadata"] = {
                    "promptTokenCount": n["in"],
                    "candidatesTokenCount": n["out"],
                    "totalTokenCount": n["in"] + n["out"],
                }
                if n["read"]:
                    out["usageMetadata"]["cachedContentTokenCount"] = n["read"]
            return out

        if not stream:
            return self._json(200, doc(text, True))
        self._head(200, "text/event-stream")
        pieces = _pieces(text)
        for i, piece in enumerate(pieces):
            if mode == "die" and i == len(pieces) - 1:
                return self._die()
            self._chunk(f"data: {json.dumps(doc(piece, i == len(pieces) - 1))}\r\n\r\n")
        self._end()

    def _ollama(
        self, body: dict[str, Any], text: str, stream: bool, mode: str, chat: bool = True
    ) -> None:
        model = body.get("model") or "llama3.2"
        final = {
            "done": True,
            "done_reason": "stop",
            "prompt_eval_count": self.counts["in"],
            "eval_count": self.counts["out"],
        }

        def line(piece: str, done: bool) -> dict[str, Any]:
            out: dict[str, Any] = {"model": model, "created_at": "2026-01-01T00:00:00Z"}
            if chat:
                out["message"] = {"role": "assistant", "content": piece}
            else:
                out["response"] = piece
            out.update(final if done else {"done": False})
            return out

        if not stream:
            return self._json(200, line(text, True))
        self._head(200, "application/x-ndjson")
        for piece in _pieces(text):
            self._chunk(json.dumps(line(piece, False)) + "\n")
        if mode == "die":
            return self._die()
        if mode == "error":
            self._chunk(json.dumps({"error": "model runner has unexpectedly stopped"}) + "\n")
            return self._end()
        self._chunk(json.dumps(line("", True)) + "\n")
        self._end()

    def _generate(self, body: dict[str, Any], text: str, stream: bool, mode: str) -> None:
        self._ollama(body, text, stream, mode, chat=False)


def _dialect(path: str) -> str | None:
    """Which API a POST path belongs to."""
    if path.endswith("/messages"):
        return "anthropic"
    if path.endswith("/responses"):
        return "responses"
    if path.endswith("/chat/completions"):
        return "chat"
    if path in ("/api/chat", "/api/generate"):
        return "ollama" if path == "/api/chat" else "generate"
    if "generatecontent" in path.lower():
        return "gemini"
    return None


def _wanted_schema(dialect: str, body: dict[str, Any]) -> Any:
    """The JSON schema a structured side call asks for (claude's title, gemini's router)."""
    if dialect == "anthropic":
        fmt = (body.get("output_config") or {}).get("format") or {}
        return fmt.get("schema") if fmt.get("type") == "json_schema" else None
    if dialect == "gemini":
        gen = body.get("generationConfig") or {}
        if gen.get("responseMimeType") == "application/json":
            return gen.get("responseJsonSchema") or gen.get("responseSchema")
    return None


def _counts(spec: str | None, text: str) -> dict[str, int]:
    """Token counts to report: `in=12,out=3,read=4,write=0` over the defaults."""
    counts = {"in": 7, "out": len(text.split()), "read": 0, "write": 0}
    for part in (spec or "").split(","):
        name, _, value = part.partition("=")
        if name.strip() in counts and value.strip().isdigit():
            counts[name.strip()] = int(value)
    return counts


def _echo(prompt: str) -> str:
    lines = [DIRECTIVE.sub("", ln).strip() for ln in prompt.splitlines()]
    lines = [ln for ln in lines if ln]
    last = lines[-1] if lines else ""
    return f"echo: {last[:200]}"


def _pieces(text: str, n: int = 3) -> list[str]:
    """`text` in up to n stream pieces that join back exactly."""
    if len(text) < n:
        return [text]
    size = -(-len(text) // n)
    return [text[i : i + size] for i in range(0, len(text), size)]
