"""The LLM client's HTTP cost per call: a request goes out in one write (head and body together), and a proxy named
in the environment is still used."""

from __future__ import annotations

import asyncio
import socket

import httpcore2._backends.anyio as anyio_backend
import httpx2._urls as httpx_urls
import pytest
from fake_llm import FakeLLM

from evoforge.config import LLMSettings
from evoforge.llm import LLMClient, LLMError

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
    real = anyio_backend.AnyIOStream.write

    async def counting(self: object, buffer: bytes, timeout: float | None = None) -> None:
        if buffer:  # an empty one sends nothing
            writes.append(buffer)
        await real(self, buffer, timeout)  # type: ignore[arg-type]

    monkeypatch.setattr(anyio_backend.AnyIOStream, "write", counting)
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


def test_a_closed_connection_is_seen_without_asking_anyio(fake_llm: FakeLLM, monkeypatch: pytest.MonkeyPatch) -> None:
    """Before each request on a kept-alive connection the pool asks, a few times, whether the server closed it; AnyIO
    answers by building all of the stream's attributes (system calls among them) each time: its socket is asked."""
    asked: list[str] = []
    real = anyio_backend.AnyIOStream.get_extra_info

    def spy(self: object, info: str) -> object:
        asked.append(info)
        return real(self, info)  # type: ignore[arg-type]

    monkeypatch.setattr(anyio_backend.AnyIOStream, "get_extra_info", spy)
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
    assert "is_readable" not in asked


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
