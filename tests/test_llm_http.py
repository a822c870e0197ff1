"""The LLM client's HTTP cost per call: a request goes out in one write (head and body together) over asyncio's own
streams (not AnyIO's), the URL is parsed once, a closed kept-alive connection is noticed, and a proxy named in the
environment is still used."""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import ssl
import subprocess
import threading
from asyncio import selector_events
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpcore2._backends.anyio as anyio_backend
import httpx2
import httpx2._urls as httpx_urls
import pytest
from fake_llm import FakeLLM

from evoforge.config import LLMSettings
from evoforge.llm import LLMClient, LLMError, _http
from evoforge.llm._http import http_client

MESSAGES = [{"role": "user", "content": "say hello " * 50}]


def client_for(base_url: str, **settings: object) -> LLMClient:
    return LLMClient(model="fake-model", base_url=base_url, api_key=None, settings=LLMSettings(**settings))


def run_calls(client: LLMClient, n: int) -> list[str]:
    async def go() -> list[str]:
        try:
            return [(await client.complete(MESSAGES, role="r"))[0] for _ in range(n)]
        finally:
            await client.aclose()

    return asyncio.run(go())


def test_a_request_is_one_write(fake_llm: FakeLLM, monkeypatch: pytest.MonkeyPatch) -> None:
    """httpcore writes a request's head and its body apart: two sends, and two wake-ups of the server, per call
    (three calls a trial); they go out together."""
    writes: list[bytes] = []
    real = selector_events._SelectorSocketTransport.write

    def counting(self: object, data: bytes) -> None:
        if data:  # an empty one sends nothing
            writes.append(bytes(data))
        real(self, data)  # type: ignore[arg-type]

    monkeypatch.setattr(selector_events._SelectorSocketTransport, "write", counting)
    monkeypatch.delenv("HTTP_PROXY", raising=False)
    monkeypatch.delenv("http_proxy", raising=False)
    fake_llm.push("one", "two", "three")
    assert run_calls(client_for(fake_llm.base_url), 3) == ["one", "two", "three"]
    assert len(writes) == 3  # six before (head and body apart)
    assert all(w.startswith(b"POST /v1/chat/completions HTTP/1.1\r\n") for w in writes)
    assert fake_llm.requests[2]["messages"] == MESSAGES  # the body arrived whole


def test_a_proxy_from_the_environment_is_used(fake_llm: FakeLLM, monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as closed:  # a port nothing listens on: the proxy there refuses the connection
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{port}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    with pytest.raises(LLMError, match="Connection error"):
        run_calls(client_for(fake_llm.base_url, max_retries=0), 1)
    assert fake_llm.requests == []  # it went to the proxy, not to the server


def test_requests_go_without_anyio(fake_llm: FakeLLM, monkeypatch: pytest.MonkeyPatch) -> None:
    """AnyIO's streams (httpcore's default under asyncio) cost more CPU than the rest of a request to a local server:
    its cancel scopes and checkpoints around each read and write, its pausing of the socket's reading after each
    read, and its answer to whether a kept-alive connection was closed (asked a few times a request), all of the
    stream's attributes built with system calls. A connection the server closed is still noticed."""
    asked: list[str] = []
    real = anyio_backend.AnyIOStream.get_extra_info

    def spy(self: object, info: str) -> object:
        asked.append(info)
        return real(self, info)  # type: ignore[arg-type]

    real_read = anyio_backend.AnyIOStream.read

    async def read_spy(self: object, max_bytes: int, timeout: float | None = None) -> bytes:
        asked.append("read")
        return await real_read(self, max_bytes, timeout)  # type: ignore[arg-type]

    monkeypatch.setattr(anyio_backend.AnyIOStream, "get_extra_info", spy)
    monkeypatch.setattr(anyio_backend.AnyIOStream, "read", read_spy)
    monkeypatch.delenv("HTTP_PROXY", raising=False)
    monkeypatch.delenv("http_proxy", raising=False)
    client = client_for(fake_llm.base_url, max_retries=0)

    async def go() -> list[str]:
        try:
            first = (await client.complete(MESSAGES, role="r"))[0]
            second = (await client.complete(MESSAGES, role="r"))[0]
            fake_llm._server.drop_connections()  # the server ends the kept-alive connection
            return [first, second, (await client.complete(MESSAGES, role="r"))[0]]
        finally:
            await client.aclose()

    fake_llm.push("one", "two", "three")
    assert asyncio.run(go()) == ["one", "two", "three"]  # the third on a new connection
    assert len(set(fake_llm.connections)) == 2
    assert asked == []  # ['ssl_object', 'read', 'read', 'is_readable', ...] before


def test_the_url_is_parsed_once(fake_llm: FakeLLM, monkeypatch: pytest.MonkeyPatch) -> None:
    """httpx2 parsing the endpoint's URL string was half of building each request: it is parsed once."""
    parsed: list[str] = []
    real = httpx_urls.urlparse

    def counting(url: str = "", **kwargs: object) -> object:
        parsed.append(url)
        return real(url, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(httpx_urls, "urlparse", counting)
    fake_llm.push("one", "two", "three")
    assert run_calls(client_for(fake_llm.base_url), 3) == ["one", "two", "three"]
    assert parsed.count(f"{fake_llm.base_url}/chat/completions") <= 1  # three before: one a request


def test_requests_over_tls(tmp_path: Path) -> None:
    """An https endpoint (every hosted provider): the TLS handshake on the connection, two requests on it."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("no openssl command to make a test certificate with")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True, timeout=60)
    peers: list[tuple[str, int]] = []

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:  # noqa: N802 - the name http.server calls
            body = json.loads(self.rfile.read(int(self.headers["content-length"])))
            peers.append(self.client_address)
            data = json.dumps({"choices": [{"message": {"content": f"tls {len(body['messages'])}"}}]}).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"https://127.0.0.1:{server.server_address[1]}/v1/chat/completions"

    async def go() -> list[str]:
        client = http_client(ssl.create_default_context(cafile=str(cert)), {}, httpx2.Limits())
        async with client:
            return [(await client.post(url, json={"messages": MESSAGES * n}, timeout=30)).json()["choices"][0]
                    ["message"]["content"] for n in (1, 2)]

    try:
        assert asyncio.run(go()) == ["tls 1", "tls 2"]
    finally:
        server.shutdown()
        server.server_close()
    assert len(peers) == 2 and peers[0] == peers[1]  # one kept-alive connection


def test_a_long_answer_is_read_whole(fake_llm: FakeLLM, monkeypatch: pytest.MonkeyPatch) -> None:
    """An answer longer than what a connection holds unread pauses the socket's reading until it is read (flow
    control), and comes through whole."""
    paused: list[int] = []
    real = _http._Protocol.data_received

    def spy(self: _http._Protocol, data: bytes) -> None:
        real(self, data)
        paused.append(self.paused_reading)

    monkeypatch.setattr(_http, "READ_PAUSE_BYTES", 4096)
    monkeypatch.setattr(_http._Protocol, "data_received", spy)
    long = "word " * 200_000  # ~1 MB
    fake_llm.push(long, "short")
    assert run_calls(client_for(fake_llm.base_url), 2) == [long, "short"]
    assert any(paused)


def test_a_long_prompt_is_sent_whole(fake_llm: FakeLLM, monkeypatch: pytest.MonkeyPatch) -> None:
    """A request longer than the socket takes at once waits for room (the transport pauses the writing) and
    arrives whole."""
    paused: list[bool] = []
    real = _http._Protocol.pause_writing

    def spy(self: _http._Protocol) -> None:
        paused.append(True)
        real(self)

    monkeypatch.setattr(_http._Protocol, "pause_writing", spy)
    long = "word " * 2_000_000  # 10 MB
    fake_llm.push("ok")
    client = client_for(fake_llm.base_url)

    async def go() -> str:
        try:
            return (await client.complete([{"role": "user", "content": long}], role="r"))[0]
        finally:
            await client.aclose()

    assert asyncio.run(go()) == "ok"
    assert paused and fake_llm.requests[0]["messages"][0]["content"] == long


def test_a_host_name_is_resolved(fake_llm: FakeLLM) -> None:
    """A named host (every hosted provider): its addresses are looked up and tried (IPv6 and IPv4 raced), here
    'localhost', whose IPv6 address, where it has one, refuses (the fake server listens on 127.0.0.1)."""
    fake_llm.push("named")
    assert run_calls(client_for(fake_llm.base_url.replace("127.0.0.1", "localhost")), 1) == ["named"]


def test_without_httpcores_private_helper_the_stock_transport_serves(fake_llm: FakeLLM,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """The backend leans on two private names of httpx2/httpcore2; a release without them must not break the client:
    it falls back to httpx2's own transport (two writes a request, as before) and answers the same."""
    from evoforge.llm import _http

    writes: list[bytes] = []
    real = selector_events._SelectorSocketTransport.write

    def counting(self: object, data: bytes) -> None:
        if data:
            writes.append(bytes(data))
        real(self, data)  # type: ignore[arg-type]

    monkeypatch.setattr(selector_events._SelectorSocketTransport, "write", counting)
    monkeypatch.setattr(_http, "is_socket_readable", None)
    monkeypatch.delenv("HTTP_PROXY", raising=False)
    monkeypatch.delenv("http_proxy", raising=False)
    fake_llm.push("one", "two")
    assert run_calls(client_for(fake_llm.base_url), 2) == ["one", "two"]
    assert len(writes) == 4  # the stock transport: head and body apart
