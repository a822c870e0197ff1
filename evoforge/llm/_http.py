"""The HTTP transport of the OpenAI-compatible client: httpx2 and its pool (httpcore2) over a network backend of
asyncio's own streams. httpcore's default under asyncio goes through AnyIO, whose cancel scopes, checkpoints and
pausing of the socket's reading around each read cost more CPU than the rest of a request to a local server; and it
writes a request's head and body apart (two sends, two wake-ups of the server) where this sends them in one."""

from __future__ import annotations

import asyncio
import ssl
import urllib.request
from collections.abc import Iterable
from typing import Any

import httpcore2
import httpx2

try:  # private to httpcore2: a release without it gets httpx2's stock transport (see `http_client`)
    from httpcore2._utils import is_socket_readable
except ImportError:  # pragma: no cover - depends on the installed httpcore2
    is_socket_readable = None

__all__ = ["http_client"]

READ_PAUSE_BYTES = 1 << 20  # unread bytes at which the socket's reading pauses until some are read
HAPPY_EYEBALLS_DELAY_S = 0.25  # before the next address of a host is tried beside the first (RFC 8305; AnyIO's)


class _Protocol(asyncio.Protocol):
    """What arrived on a connection, and whether it ended, for `_Stream` to read; flow control both ways."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.received = bytearray()
        self.ended = False
        self.error: BaseException | None = None
        self.paused_reading = False
        self._waiter: asyncio.Future[None] | None = None
        self._drained: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.received += data
        if len(self.received) >= READ_PAUSE_BYTES and self.transport is not None:
            self.transport.pause_reading()
            self.paused_reading = True
        self._wake()

    def eof_received(self) -> bool:
        self.ended = True
        self._wake()
        return False  # the transport closes itself

    def connection_lost(self, exc: Exception | None) -> None:
        self.ended = True
        self.error = self.error or exc
        self._wake()
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    def pause_writing(self) -> None:
        self._drained = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)
        self._drained = None

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def wait_data(self) -> None:
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    @property
    def writing_paused(self) -> bool:
        return self._drained is not None and not self._drained.done()

    async def drain(self) -> None:
        if self._drained is not None:
            await self._drained


class _Stream(httpcore2.AsyncNetworkStream):
    """One connection. What is written is held until the next read (the answer is read only once the request was
    written whole) and sent then in one write."""

    def __init__(self, transport: asyncio.Transport, protocol: _Protocol) -> None:
        self._transport, self._protocol = transport, protocol
        self._held: list[bytes] = []
        self._timeout: float | None = None

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if buffer:
            self._held.append(buffer)
            self._timeout = timeout

    async def _flush(self) -> None:
        held, self._held = b"".join(self._held), []
        if self._transport.is_closing():
            return  # as httpcore does on a write error: read what the server may have answered before it closed
        self._transport.write(held)
        if not self._protocol.writing_paused:
            return  # the socket took it, or the transport's buffer holds it under its high-water mark
        try:
            async with asyncio.timeout(self._timeout):
                await self._protocol.drain()
        except TimeoutError:
            raise httpcore2.WriteTimeout(f"no room to write within {self._timeout} s") from None

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        if self._held:
            await self._flush()
        protocol = self._protocol
        if not protocol.received and not protocol.ended:
            try:
                async with asyncio.timeout(timeout):
                    await protocol.wait_data()
            except TimeoutError:
                raise httpcore2.ReadTimeout(f"nothing read within {timeout} s") from None
        if protocol.received:
            data = bytes(protocol.received[:max_bytes])
            del protocol.received[:max_bytes]
            if protocol.paused_reading and len(protocol.received) < READ_PAUSE_BYTES // 2:
                protocol.paused_reading = False
                self._transport.resume_reading()
            return data
        if protocol.error is not None:
            raise httpcore2.ReadError(str(protocol.error) or type(protocol.error).__name__)
        return b""  # the server closed the connection

    async def aclose(self) -> None:
        self._held = []
        self._transport.close()

    async def start_tls(self, ssl_context: ssl.SSLContext, server_hostname: str | None = None,
                        timeout: float | None = None) -> httpcore2.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                transport = await loop.start_tls(self._transport, self._protocol, ssl_context,
                                                 server_hostname=server_hostname)
        except TimeoutError:
            self._transport.close()
            raise httpcore2.ConnectTimeout(f"no TLS handshake within {timeout} s") from None
        except (OSError, ssl.SSLError) as exc:
            self._transport.close()
            raise httpcore2.ConnectError(str(exc)) from exc
        assert isinstance(transport, asyncio.Transport)
        self._protocol.transport = transport  # its reading is what pauses from now on
        return _Stream(transport, self._protocol)

    def get_extra_info(self, info: str) -> Any:
        transport = self._transport
        if info == "is_readable":  # an idle kept-alive connection is readable when the server closed it
            protocol = self._protocol
            return bool(protocol.received) or protocol.ended or is_socket_readable(transport.get_extra_info("socket"))
        if info == "ssl_object":
            return transport.get_extra_info("ssl_object")
        if info == "client_addr":
            return transport.get_extra_info("sockname")
        if info == "server_addr":
            return transport.get_extra_info("peername")
        if info == "socket":
            return transport.get_extra_info("socket")
        return None


class _Backend(httpcore2.AsyncNetworkBackend):
    """Connections as asyncio's transports (`_Stream`)."""

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                          socket_options: Iterable[Any] | None = None) -> httpcore2.AsyncNetworkStream:
        local = (local_address, 0) if local_address else None
        return await self._connect(  # IPv6 and IPv4 addresses raced, as AnyIO does (a host whose IPv6 route is dead
            # gets its IPv4 connection within a quarter second, not after the connect timeout)
            lambda loop: loop.create_connection(_Protocol, host, port, local_addr=local,
                                                happy_eyeballs_delay=HAPPY_EYEBALLS_DELAY_S),
            timeout, socket_options)

    async def connect_unix_socket(self, path: str, timeout: float | None = None,
                                  socket_options: Iterable[Any] | None = None) -> httpcore2.AsyncNetworkStream:
        return await self._connect(lambda loop: loop.create_unix_connection(_Protocol, path), timeout, socket_options)

    @staticmethod
    async def _connect(connect: Any, timeout: float | None,
                       socket_options: Iterable[Any] | None) -> httpcore2.AsyncNetworkStream:
        try:
            async with asyncio.timeout(timeout):
                transport, protocol = await connect(asyncio.get_running_loop())
        except TimeoutError:
            raise httpcore2.ConnectTimeout(f"no connection within {timeout} s") from None
        except OSError as exc:
            raise httpcore2.ConnectError(str(exc)) from exc
        for option in socket_options or ():
            transport.get_extra_info("socket").setsockopt(*option)
        return _Stream(transport, protocol)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


def http_client(verify: ssl.SSLContext, headers: dict[str, str], limits: httpx2.Limits) -> httpx2.AsyncClient:
    """An httpx2 client over the backend above, except through a proxy named in the environment (HTTPS_PROXY...:
    httpx2's own transports then, as they read it)."""
    options: dict[str, Any] = dict(verify=verify, follow_redirects=True, headers=headers, limits=limits)
    transport = httpx2.AsyncHTTPTransport(verify=verify, limits=limits)
    # httpx2 takes no network backend: its transport's pool (private) is replaced. A release that moves either
    # private name gets the stock transport, slower but the same behaviour.
    if urllib.request.getproxies() or is_socket_readable is None or not isinstance(
            getattr(transport, "_pool", None), httpcore2.AsyncConnectionPool):
        return httpx2.AsyncClient(**options)
    transport._pool = httpcore2.AsyncConnectionPool(  # the same pool httpx2 builds, with the backend above
        ssl_context=verify, max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive_connections, keepalive_expiry=limits.keepalive_expiry,
        network_backend=_Backend(),
    )
    return httpx2.AsyncClient(**options, transport=transport)
