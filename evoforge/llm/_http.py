"""The HTTP transport of the OpenAI-compatible client: httpx2's own, over a network backend that sends a request's
head and body in one write (httpcore writes them apart: two sends, two wake-ups of the server, per call) and asks
its socket directly whether a kept-alive connection was closed by the server."""

from __future__ import annotations

import ssl
import urllib.request
from collections.abc import Iterable
from typing import Any

import httpcore2
import httpx2
from httpcore2._utils import is_socket_readable

__all__ = ["http_client"]


class _OneWriteStream(httpcore2.AsyncNetworkStream):
    """A connection's stream that holds what is written until the next read (the answer is read only once the
    request was written whole) and sends it then in one write. Whether it is readable (the pool asks before each
    request on a kept-alive connection, a few times) is asked of its socket, found once: AnyIO builds all of a
    stream's attributes, with system calls, for each question."""

    def __init__(self, stream: httpcore2.AsyncNetworkStream) -> None:
        self._stream = stream
        self._socket = stream.get_extra_info("socket")
        self._held: list[bytes] = []
        self._timeout: float | None = None

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if buffer:
            self._held.append(buffer)
            self._timeout = timeout

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        if self._held:
            held, self._held = b"".join(self._held), []
            try:
                await self._stream.write(held, timeout=self._timeout)
            except httpcore2.WriteError:
                pass  # as httpcore does: the server may have answered already (an error) before it closed
        return await self._stream.read(max_bytes, timeout=timeout)

    async def aclose(self) -> None:
        self._held = []
        await self._stream.aclose()

    async def start_tls(self, ssl_context: ssl.SSLContext, server_hostname: str | None = None,
                        timeout: float | None = None) -> httpcore2.AsyncNetworkStream:
        return _OneWriteStream(await self._stream.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable":
            return is_socket_readable(self._socket)
        return self._stream.get_extra_info(info)


class _OneWriteBackend(httpcore2.AsyncNetworkBackend):
    """AnyIO's backend (httpcore's default under asyncio), its connections' writes held as `_OneWriteStream` does."""

    def __init__(self) -> None:
        self._backend = httpcore2.AnyIOBackend()

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                          socket_options: Iterable[Any] | None = None) -> httpcore2.AsyncNetworkStream:
        return _OneWriteStream(await self._backend.connect_tcp(host, port, timeout, local_address, socket_options))

    async def connect_unix_socket(self, path: str, timeout: float | None = None,
                                  socket_options: Iterable[Any] | None = None) -> httpcore2.AsyncNetworkStream:
        return _OneWriteStream(await self._backend.connect_unix_socket(path, timeout, socket_options))

    async def sleep(self, seconds: float) -> None:
        await self._backend.sleep(seconds)


def http_client(verify: ssl.SSLContext, headers: dict[str, str], limits: httpx2.Limits) -> httpx2.AsyncClient:
    """An httpx2 client; its requests go out in one write each, except through a proxy named in the environment
    (HTTPS_PROXY...: httpx2's own transports then, as they read it)."""
    options: dict[str, Any] = dict(verify=verify, follow_redirects=True, headers=headers, limits=limits)
    if urllib.request.getproxies():
        return httpx2.AsyncClient(**options)
    transport = httpx2.AsyncHTTPTransport(verify=verify, limits=limits)
    transport._pool = httpcore2.AsyncConnectionPool(  # the same pool httpx2 builds, with the backend above
        ssl_context=verify, max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive_connections, keepalive_expiry=limits.keepalive_expiry,
        network_backend=_OneWriteBackend(),
    )
    return httpx2.AsyncClient(**options, transport=transport)
