"""A scripted Anthropic Messages API server on 127.0.0.1 for tests (POST /v1/messages): no network, no SDK mocking.

    with FakeAnthropic() as fake:
        fake.push("hello")                                    # a 200 text answer
        fake.push(Reply.error(429, retry_after="1"))          # an HTTP error (tests/fake_llm.Reply)
        ...  # AnthropicClient(base_url=fake.base_url, ...)   ("http://127.0.0.1:PORT", the SDK adds /v1/messages)
        fake.requests[0]["system"], fake.headers[0]["x-api-key"]

Usage counts words like tests/fake_llm.py: input_tokens = words of system + messages, output_tokens = words of
the answer. Shares `Reply` and the queue/handler behaviour of FakeLLM; only the wire format differs.
"""

from __future__ import annotations

import json
from http.server import BaseHTTPRequestHandler
from typing import Any

from fake_llm import FakeLLM, Reply, count_tokens, send_json

ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 429: "rate_limit_error",
               500: "api_error", 529: "overloaded_error"}


def message_json(body: dict[str, Any], reply: Reply, number: int) -> dict[str, Any]:
    """An Anthropic `message` object answering `body` with `reply.content`."""
    prompt = str(body.get("system", "")) + " " + " ".join(str(m.get("content", "")) for m in body.get("messages", []))
    return {
        "id": f"msg_fake_{number}",
        "type": "message",
        "role": "assistant",
        "model": body.get("model", "fake"),
        "content": [{"type": "text", "text": reply.content}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": count_tokens(prompt), "output_tokens": count_tokens(reply.content)},
    }


class FakeAnthropic(FakeLLM):
    """FakeLLM speaking Anthropic's Messages format."""

    def __init__(self, default: str = "default answer") -> None:
        super().__init__(default)
        self._server.RequestHandlerClass = _make_handler(self)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def _make_handler(fake: FakeAnthropic) -> type[BaseHTTPRequestHandler]:
    class _Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # headers and body go out in two writes: with Nagle's algorithm on, a keep-alive client's delayed ACK holds
        # the body back ~40 ms per answer; real servers (uvicorn, vLLM, llama.cpp) set TCP_NODELAY too
        disable_nagle_algorithm = True

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - silence request logs
            return

        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if self.path.split("?")[0] != "/v1/messages":
                self._send(404, {}, json.dumps({"type": "error", "error": {"type": "not_found_error",
                                                                            "message": f"no route {self.path}"}}))
                return
            body = json.loads(raw or b"{}")
            reply = fake.next_reply(body, {k.lower(): v for k, v in self.headers.items()})
            if reply.delay_s > 0:
                fake.wait(reply.delay_s)
            if reply.status != 200:
                kind = ERROR_TYPES.get(reply.status, "api_error")
                error = {"type": "error", "error": {"type": kind, "message": f"fake error {reply.status}"}}
                self._send(reply.status, reply.headers, reply.body if reply.body is not None else json.dumps(error))
                return
            self._send(200, reply.headers, json.dumps(message_json(body, reply, len(fake.requests))))

        def _send(self, status: int, headers: dict[str, str], text: str) -> None:
            send_json(self, status, headers, text)

    return _Handler
