"""A scripted OpenAI-compatible chat server on 127.0.0.1 for tests: no network, no SDK mocking.

Usage (the `fake_llm` fixture in conftest.py starts one per test and shuts it down):

    def test_something(fake_llm):
        fake_llm.push("NAME: x\\nMOTIVATION: y\\n```python\\nprint(1)\\n```")   # a text answer
        fake_llm.push(Reply.error(429, retry_after="1"))                      # an HTTP error
        fake_llm.push(Reply.text("late", delay_s=0.5))                        # a delayed answer
        fake_llm.set_handler(lambda body: "answer for " + body["model"])      # dynamic answers
        ...  # point a client at fake_llm.base_url ("http://127.0.0.1:PORT/v1"), any api key
        assert len(fake_llm.requests) == 3                                    # every request body, in order
        assert fake_llm.headers[0]["authorization"] == "Bearer sk-test"       # their headers, lower-case keys

Each request takes the next queued reply; when the queue is empty it asks the handler, else answers `default`.
A handler may return a plain string (a 200 text answer) or a `Reply`.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

PATHS = ("/v1/chat/completions", "/chat/completions")


@dataclass(frozen=True)
class Reply:
    """One scripted answer: a 200 text answer, or an HTTP error; either may wait `delay_s` first."""

    content: str = ""
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: str | None = None  # raw body (an error's, or a broken 200); made up from the rest when None
    delay_s: float = 0.0
    usage: bool = True  # False omits the "usage" field from a 200 answer

    @classmethod
    def text(cls, content: str, *, delay_s: float = 0.0, usage: bool = True) -> Reply:
        return cls(content=content, delay_s=delay_s, usage=usage)

    @classmethod
    def error(cls, status: int, *, retry_after: str | None = None, body: str | None = None) -> Reply:
        headers = {"Retry-After": retry_after} if retry_after is not None else {}
        return cls(status=status, headers=headers, body=body)

    @classmethod
    def delay(cls, seconds: float, content: str = "") -> Reply:
        return cls(content=content, delay_s=seconds)


Handler = Callable[[dict[str, Any]], "str | Reply"]


def count_tokens(text: str) -> int:
    """The fake's token count: whitespace-separated words (deterministic, good enough for tests)."""
    return len(text.split())


class FakeLLM:
    """The server object: script it with push()/set_handler(), read back .requests and .headers."""

    def __init__(self, default: str = "NAME: default\nMOTIVATION: the fake server's default answer") -> None:
        self.default = default
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.connections: list[tuple[str, int]] = []  # the client's (host, port) of each request: one per connection
        self.handler_errors: list[
            Exception
        ] = []  # exceptions raised by the handler (each answered with a 500)
        self._queue: deque[Reply] = deque()
        self._handler: Handler | None = None
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._server = _Server(("127.0.0.1", 0), _make_handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._serve, name="fake-llm", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def _serve(self) -> None:
        self._server.serve_forever(poll_interval=0.02)  # a short poll makes close() quick

    def start(self) -> FakeLLM:
        self._thread.start()
        return self

    def close(self) -> None:
        self._closing.set()  # wakes delayed replies at once
        self._server.shutdown()
        self._server.drop_connections()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> FakeLLM:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def push(self, *replies: str | Reply) -> None:
        """Queue replies, answered in order; a string is a 200 text answer."""
        with self._lock:
            for reply in replies:
                self._queue.append(Reply.text(reply) if isinstance(reply, str) else reply)

    def set_handler(self, handler: Handler | None) -> None:
        """Answer requests with `handler(request_json)` once the queue is empty (None removes it)."""
        self._handler = handler

    @property
    def pending(self) -> int:
        """Replies still queued."""
        with self._lock:
            return len(self._queue)

    def next_reply(self, body: dict[str, Any], headers: dict[str, str], peer: tuple[str, int] = ("", 0)) -> Reply:
        with self._lock:
            self.requests.append(body)
            self.headers.append(headers)
            self.connections.append(peer)
            if self._queue:
                return self._queue.popleft()
        if self._handler is not None:
            answer = self._handler(body)
            return Reply.text(answer) if isinstance(answer, str) else answer
        return Reply.text(self.default)

    def wait(self, seconds: float) -> None:
        self._closing.wait(seconds)


def send_json(handler: BaseHTTPRequestHandler, status: int, headers: dict[str, str], text: str) -> None:
    """Write one JSON response (any fake server's handler uses it)."""
    data = text.encode()
    try:
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        for key, value in headers.items():
            handler.send_header(key, value)
        handler.end_headers()
        handler.wfile.write(data)
    except (BrokenPipeError, ConnectionResetError):
        pass  # the client gave up (e.g. its timeout fired during a delayed reply)


class _Server(ThreadingHTTPServer):
    request_queue_size = 256  # many proposals and analyses connect at once; the default backlog (5) drops them

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._open_lock:
            self._open.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def drop_connections(self) -> None:
        """End every open (kept-alive) connection, as a server that goes down does: its clients see the close."""
        with self._open_lock:
            sockets = list(self._open)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


def completion_json(body: dict[str, Any], reply: Reply, number: int) -> dict[str, Any]:
    """An OpenAI chat.completion object answering `body` with `reply.content`."""
    prompt = " ".join(str(m.get("content", "")) for m in body.get("messages", []))
    result: dict[str, Any] = {
        "id": f"chatcmpl-fake-{number}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model", "fake"),
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": reply.content},
                "finish_reason": "stop",
            }
        ],
    }
    if reply.usage:
        tokens_in, tokens_out = count_tokens(prompt), count_tokens(reply.content)
        result["usage"] = {
            "prompt_tokens": tokens_in,
            "completion_tokens": tokens_out,
            "total_tokens": tokens_in + tokens_out,
        }
    return result


def _make_handler(fake: FakeLLM) -> type[BaseHTTPRequestHandler]:
    class _Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # headers and body go out in two writes: with Nagle's algorithm on, a keep-alive client's delayed ACK holds
        # the body back ~40 ms per answer; real servers (uvicorn, vLLM, llama.cpp) set TCP_NODELAY too
        disable_nagle_algorithm = True

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - silence request logs
            return

        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            if self.path.split("?")[0] not in PATHS:
                self._send(404, {}, json.dumps({"error": {"message": f"no route {self.path}"}}))
                return
            try:
                body = json.loads(raw or b"{}")
            except json.JSONDecodeError:
                self._send(400, {}, json.dumps({"error": {"message": "body is not JSON"}}))
                return
            headers = {k.lower(): v for k, v in self.headers.items()}
            try:
                reply = fake.next_reply(body, headers, self.client_address[:2])
            except Exception as exc:  # a broken test handler: answer 500 and keep it for the test to see
                fake.handler_errors.append(exc)
                reply = Reply.error(500, body=json.dumps({"error": {"message": f"handler raised {exc!r}"}}))
            if reply.delay_s > 0:
                fake.wait(reply.delay_s)
            if reply.status == 200 and reply.body is not None:  # a raw (e.g. truncated) 200 body
                self._send(200, reply.headers, reply.body)
                return
            if reply.status != 200:
                error = {"error": {"message": f"fake error {reply.status}", "type": "fake", "code": None}}
                text = reply.body if reply.body is not None else json.dumps(error)
                self._send(reply.status, reply.headers, text)
                return
            self._send(200, reply.headers, json.dumps(completion_json(body, reply, len(fake.requests))))

        def _send(self, status: int, headers: dict[str, str], text: str) -> None:
            send_json(self, status, headers, text)

    return _Handler
