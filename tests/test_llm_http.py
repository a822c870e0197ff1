"""The LLM client's HTTP (aiohttp) against real loopback servers: one write a request, kept-alive connections, a
closed connection noticed, timeouts and unreachable endpoints told apart, proxies from the environment, TLS,
redirects, compressed answers, and sessions closed with their event loop."""

from __future__ import annotations

import asyncio
import gc
import gzip
import json
import shutil
import socket
import socketserver
import ssl
import subprocess
import threading
import warnings
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import aiohttp
import pytest
from fake_llm import FakeLLM, Reply

from evoforge.config import LLMSettings
from evoforge.llm import LLMClient, LLMError
from evoforge.llm import client as client_module

SECRET = "sk-test-SECRET"
MESSAGES = [{"role": "user", "content": "say hello " * 50}]
ANSWER = json.dumps({"choices": [{"message": {"content": "raw"}}]}).encode()


def client_for(base_url: str, **settings: object) -> LLMClient:
    client = LLMClient(model="fake-model", base_url=base_url, api_key=SECRET, settings=LLMSettings(**settings))
    client.backoff_base_s = 0.01
    return client


def run_calls(client: LLMClient, n: int) -> list[str]:
    async def go() -> list[str]:
        try:
            return [(await client.complete(MESSAGES, role="r"))[0] for _ in range(n)]
        finally:
            await client.aclose()

    return asyncio.run(go())


@pytest.fixture
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)


Handle = Callable[[BaseHTTPRequestHandler, bytes], None]


@pytest.fixture
def raw_server() -> Iterator[Callable[[Handle], str]]:
    """Starts an HTTP/1.1 server on 127.0.0.1 whose POSTs `handle(handler, body)` answers; gives its base URL."""
    servers: list[ThreadingHTTPServer] = []

    def start(handle: Handle, wrap: Callable[[socket.socket], socket.socket] | None = None,
              scheme: str = "http") -> str:
        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 - the name http.server calls
                handle(self, self.rfile.read(int(self.headers.get("content-length") or 0)))

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        if wrap is not None:
            server.socket = wrap(server.socket)
        servers.append(server)
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
        return f"{scheme}://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def answer(handler: BaseHTTPRequestHandler, status: int, data: bytes, **headers: str) -> None:
    handler.send_response(status)
    for key, value in {"content-length": str(len(data)), **headers}.items():
        handler.send_header(key.replace("_", "-"), value)
    handler.end_headers()
    handler.wfile.write(data)


def test_a_request_is_one_write(fake_llm: FakeLLM, monkeypatch: pytest.MonkeyPatch, no_proxy: None) -> None:
    """A request's head and body go out in one send (two would be two wake-ups of the server, three calls a
    trial), on one kept-alive connection."""
    sends: list[bytes] = []
    real_send, real_sendmsg = socket.socket.send, socket.socket.sendmsg

    def send(self: socket.socket, data: bytes, *args: object) -> int:
        if threading.current_thread() is threading.main_thread():  # the client's (the server's are its threads)
            sends.append(bytes(data))
        return real_send(self, data, *args)  # type: ignore[arg-type]

    def sendmsg(self: socket.socket, buffers: list[bytes], *args: object) -> int:
        if threading.current_thread() is threading.main_thread():
            sends.append(b"".join(buffers))
        return real_sendmsg(self, buffers, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(socket.socket, "send", send)
    monkeypatch.setattr(socket.socket, "sendmsg", sendmsg)
    fake_llm.push("one", "two", "three")
    assert run_calls(client_for(fake_llm.base_url), 3) == ["one", "two", "three"]
    assert len(sends) == 3 and all(s.startswith(b"POST /v1/chat/completions HTTP/1.1\r\n") for s in sends)
    assert all(s.endswith(json.dumps(fake_llm.requests[0]).encode()[-20:]) for s in sends)  # the body with it
    assert fake_llm.requests[2]["messages"] == MESSAGES  # the body arrived whole
    assert len(set(fake_llm.connections)) == 1
    headers = fake_llm.headers[0]
    assert headers["authorization"] == f"Bearer {SECRET}" and headers["content-type"] == "application/json"


def test_a_connection_the_server_closed_is_replaced(fake_llm: FakeLLM, no_proxy: None) -> None:
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


def test_the_url_is_parsed_once(fake_llm: FakeLLM, monkeypatch: pytest.MonkeyPatch) -> None:
    parsed: list[str] = []
    real = client_module.URL

    def counting(text: str) -> object:
        parsed.append(text)
        return real(text)

    monkeypatch.setattr(client_module, "URL", counting)
    client_module.completions_url.cache_clear()
    fake_llm.push("one", "two", "three")
    assert run_calls(client_for(fake_llm.base_url), 3) == ["one", "two", "three"]
    assert parsed == [f"{fake_llm.base_url}/chat/completions"]


def test_a_server_that_never_answers_times_out(fake_llm: FakeLLM, no_proxy: None) -> None:
    """`timeout_s` bounds the wait for the answer: a timeout (retried), not the call's deadline, and the endpoint
    counts as reached (aiohttp's timeouts are TimeoutErrors, like the deadline's)."""
    fake_llm.push(Reply.delay(120.0, "too late"), Reply.delay(120.0, "too late"))
    with pytest.raises(LLMError) as info:
        run_calls(client_for(fake_llm.base_url, timeout_s=0.3, deadline_s=600, max_retries=1), 1)
    assert "2 attempt" in str(info.value) and "Request timed out (SocketTimeoutError" in str(info.value)
    assert not info.value.unreachable and len(fake_llm.requests) == 2


def test_a_host_that_takes_no_connection_is_unreachable(no_proxy: None) -> None:
    """A timeout while connecting (a host that drops the connection's first packet): unreachable, the run halts."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)  # a queue of one, filled below: the kernel drops the next connection's SYN
        with socket.create_connection(listener.getsockname(), timeout=10):
            with pytest.raises(LLMError) as info:
                run_calls(client_for(f"http://127.0.0.1:{listener.getsockname()[1]}/v1", timeout_s=0.3,
                                     max_retries=0), 1)
    assert "Request timed out (ConnectionTimeoutError" in str(info.value) and info.value.unreachable


def test_a_refused_connection_is_unreachable(no_proxy: None) -> None:
    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    with pytest.raises(LLMError) as info:
        run_calls(client_for(f"http://127.0.0.1:{port}/v1", max_retries=1), 1)
    assert "2 attempt" in str(info.value) and "Connection error (ClientConnectorError" in str(info.value)
    assert info.value.unreachable


def test_an_answer_cut_short_is_retried(raw_server: Callable[[Handle], str], no_proxy: None) -> None:
    cuts: list[int] = []

    def handle(handler: BaseHTTPRequestHandler, body: bytes) -> None:
        if not cuts:
            cuts.append(1)
            handler.send_response(200)
            handler.send_header("content-length", str(len(ANSWER)))
            handler.end_headers()
            handler.wfile.write(ANSWER[:10])  # then the connection ends
            handler.close_connection = True
            return
        answer(handler, 200, ANSWER)

    assert run_calls(client_for(raw_server(handle) + "/v1", max_retries=1), 1) == ["raw"]


def test_proxies_from_the_environment(raw_server: Callable[[Handle], str], fake_llm: FakeLLM,
                                      monkeypatch: pytest.MonkeyPatch, no_proxy: None) -> None:
    """HTTP_PROXY is used (with the credentials in its URL), and NO_PROXY skips it."""
    seen: list[tuple[str, str | None]] = []

    def proxy(handler: BaseHTTPRequestHandler, body: bytes) -> None:
        seen.append((handler.path, handler.headers.get("proxy-authorization")))
        answer(handler, 200, ANSWER)

    monkeypatch.setenv("HTTP_PROXY", raw_server(proxy).replace("http://", "http://user:pw@"))
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    assert run_calls(client_for(fake_llm.base_url), 2) == ["raw", "raw"]
    assert seen == [(f"{fake_llm.base_url}/chat/completions", "Basic dXNlcjpwdw==")] * 2  # user:pw
    assert fake_llm.requests == []
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    fake_llm.push("direct")
    assert run_calls(client_for(fake_llm.base_url), 1) == ["direct"] and len(seen) == 2


def test_the_key_is_not_sent_to_a_proxy(monkeypatch: pytest.MonkeyPatch, no_proxy: None) -> None:
    """Through a proxy, an https endpoint's request is tunnelled (CONNECT): the proxy sees no API key (aiohttp sends
    a session's default headers with the CONNECT, an Authorization among them as Proxy-Authorization)."""
    heads: list[bytes] = []

    class Proxy(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            head = b""
            while not head.endswith(b"\r\n\r\n") and len(head) < 65536:
                line = self.rfile.readline()
                if not line:
                    break
                head += line
            heads.append(head)  # then the connection ends: the tunnel fails

    with socketserver.ThreadingTCPServer(("127.0.0.1", 0), Proxy) as proxy:
        proxy.daemon_threads = True
        threading.Thread(target=proxy.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
        monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{proxy.server_address[1]}")
        try:
            with pytest.raises(LLMError):
                run_calls(client_for("https://api.example.invalid/v1", max_retries=0), 1)
        finally:
            proxy.shutdown()
    assert heads and heads[0].startswith(b"CONNECT api.example.invalid:443 HTTP/1.1\r\n")
    assert all(SECRET.encode() not in head for head in heads)


def test_a_redirect_is_followed_and_a_compressed_answer_read(raw_server: Callable[[Handle], str],
                                                            no_proxy: None) -> None:
    seen: list[tuple[str, str | None]] = []

    def handle(handler: BaseHTTPRequestHandler, body: bytes) -> None:
        seen.append((handler.path, handler.headers.get("authorization")))
        if handler.path == "/v1/chat/completions":
            answer(handler, 307, b"", location="/v2/chat/completions")
        else:
            answer(handler, 200, gzip.compress(ANSWER), content_encoding="gzip")

    assert run_calls(client_for(raw_server(handle) + "/v1"), 1) == ["raw"]
    assert seen == [("/v1/chat/completions", f"Bearer {SECRET}"), ("/v2/chat/completions", f"Bearer {SECRET}")]


def test_an_error_status_keeps_its_body_and_headers(raw_server: Callable[[Handle], str], no_proxy: None,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """An HTTP error: its status and body in the failure, its headers read for the wait hint (any letter case)."""
    def handle(handler: BaseHTTPRequestHandler, body: bytes) -> None:
        answer(handler, 503, b'{"error": "overloaded"}', **{"Retry-After-Ms": "10"})

    client = client_for(raw_server(handle) + "/v1", max_retries=1)
    failures: list[object] = []
    real = client._classify

    def spy(exc: BaseException) -> object:
        failures.append(real(exc))
        return failures[-1]

    monkeypatch.setattr(client, "_classify", spy)
    with pytest.raises(LLMError, match=r'2 attempt.*HTTP 503: \{"error": "overloaded"\}'):
        run_calls(client, 1)
    assert [(f.retryable, f.wait_hint) for f in failures] == [(True, 0.01)] * 2  # type: ignore[attr-defined]


def test_requests_over_tls(tmp_path: Path, raw_server: Callable[..., str], monkeypatch: pytest.MonkeyPatch,
                           no_proxy: None) -> None:
    """An https endpoint (every hosted provider): the TLS handshake on the connection, two requests on it."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("no openssl command to make a test certificate with")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True, timeout=60)
    peers: list[tuple[str, int]] = []

    def handle(handler: BaseHTTPRequestHandler, body: bytes) -> None:
        peers.append(handler.client_address)
        answer(handler, 200, json.dumps({"choices": [{"message": {"content": f"tls {len(peers)}"}}]}).encode())

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    url = raw_server(handle, lambda sock: context.wrap_socket(sock, server_side=True), "https")
    monkeypatch.setattr(client_module, "tls_context", lambda: ssl.create_default_context(cafile=str(cert)))
    assert run_calls(client_for(url + "/v1"), 2) == ["tls 1", "tls 2"]
    assert len(peers) == 2 and peers[0] == peers[1]  # one kept-alive connection


def test_a_long_answer_is_read_whole(fake_llm: FakeLLM, no_proxy: None) -> None:
    long = "word " * 200_000  # ~1 MB
    fake_llm.push(long, "short")
    assert run_calls(client_for(fake_llm.base_url), 2) == [long, "short"]


def test_a_long_prompt_is_sent_whole(fake_llm: FakeLLM, no_proxy: None) -> None:
    long = "word " * 2_000_000  # 10 MB: more than the socket takes at once
    fake_llm.push("ok")
    client = client_for(fake_llm.base_url)

    async def go() -> str:
        try:
            return (await client.complete([{"role": "user", "content": long}], role="r"))[0]
        finally:
            await client.aclose()

    assert asyncio.run(go()) == "ok"
    assert fake_llm.requests[0]["messages"][0]["content"] == long


def test_a_host_name_is_resolved(fake_llm: FakeLLM, no_proxy: None) -> None:
    """A named host (every hosted provider): its addresses are looked up and tried (IPv6 and IPv4 raced), here
    'localhost', whose IPv6 address, where it has one, refuses (the fake server listens on 127.0.0.1)."""
    fake_llm.push("named")
    assert run_calls(client_for(fake_llm.base_url.replace("127.0.0.1", "localhost")), 1) == ["named"]


def test_a_session_closes_with_its_event_loop(fake_llm: FakeLLM, caplog: pytest.LogCaptureFixture,
                                              no_proxy: None) -> None:
    """A loop that ends without `aclose` (a later `asyncio.run` gets its own session) closes its session and its
    kept-alive connection as it ends: no "Unclosed client session" or unclosed transport when they are collected."""
    client = client_for(fake_llm.base_url)
    sessions: list[aiohttp.ClientSession] = []

    async def one() -> str:
        text = (await client.complete(MESSAGES, role="r"))[0]
        assert client._http is not None
        sessions.append(client._http.http)
        return text

    fake_llm.push("one", "two")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        assert asyncio.run(one()) == "one" and sessions[0].closed
        assert asyncio.run(one()) == "two" and sessions[1].closed and sessions[0] is not sessions[1]
        sessions.clear()
        client._http = None
        gc.collect()
    assert [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)] == []
    assert "Unclosed" not in caplog.text
    assert len(set(fake_llm.connections)) == 2
