"""The HTTP transport of the OpenAI-compatible client: one aiohttp session per event loop (its C parser, a request's
head and body written in one send), its connections kept alive between requests and closed when its loop ends."""

from __future__ import annotations

import asyncio
import io
import ssl
from collections.abc import AsyncIterator, Mapping

import aiohttp
from aiohttp.helpers import get_env_proxy_for_url
from yarl import URL

__all__ = ["Session", "open_session"]

MAX_CONNECTIONS = 1000  # open at once, over all hosts (idle ones are closed after aiohttp's keep-alive timeout)
HAPPY_EYEBALLS_DELAY_S = 0.25  # before the next address of a host is tried beside the first (RFC 8305)
LARGE_BODY_BYTES = 1 << 20  # a request body larger goes to aiohttp as a file (written in chunks)

class Session:
    """One event loop's aiohttp session, and the proxy of each URL, looked up once in the environment (HTTPS_PROXY,
    NO_PROXY...; credentials from the proxy's URL or ~/.netrc) as aiohttp's `trust_env` does — which looks them up
    again on every request, in a thread of its own, twice (the proxy, then ~/.netrc for the endpoint's host).

    `headers` (the API key's among them) go with each request, not as the session's defaults: aiohttp sends a
    session's default headers to a proxy too, an `Authorization` among them as the CONNECT's Proxy-Authorization."""

    def __init__(self, verify: ssl.SSLContext, headers: Mapping[str, str]) -> None:
        self.loop = asyncio.get_running_loop()
        connector = aiohttp.TCPConnector(limit=MAX_CONNECTIONS, ssl=verify,
                                         happy_eyeballs_delay=HAPPY_EYEBALLS_DELAY_S)
        self.http = aiohttp.ClientSession(connector=connector)
        self.headers = dict(headers)
        self._proxies: dict[URL, URL | None] = {}
        self._keeper = _closes_with_loop(self.http)

    def _proxy(self, url: URL) -> URL | None:
        """The proxy for `url`, its credentials in its URL (aiohttp sends them as Proxy-Authorization)."""
        if url not in self._proxies:
            try:
                proxy, auth = get_env_proxy_for_url(url)
            except LookupError:  # none set for the URL's scheme, or NO_PROXY names its host
                proxy = auth = None
            if proxy is not None and auth is not None:
                proxy = proxy.with_user(auth.login).with_password(auth.password)
            self._proxies[url] = proxy
        return self._proxies[url]

    async def post(self, url: URL, body: bytes, timeout: aiohttp.ClientTimeout) -> tuple[int, Mapping[str, str], str]:
        """POST `body`; the status, headers and text of the answer (redirects followed, the body decompressed).

        A kept-alive connection the server closed just before the request went out (its close not yet seen) fails
        with no answer: the request is sent once more at once, on another connection, as aiohttp does for
        idempotent methods only (RFC 9112 9.3.1). Otherwise the call's retries would wait a backoff for it."""
        try:
            return await self._post(url, body, timeout)
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as exc:
            if isinstance(exc, aiohttp.ClientConnectorError):  # no connection at all: the call's retries decide
                raise
        return await self._post(url, body, timeout)

    async def _post(self, url: URL, body: bytes, timeout: aiohttp.ClientTimeout) -> tuple[int, Mapping[str, str], str]:
        data = body if len(body) <= LARGE_BODY_BYTES else io.BytesIO(body)  # aiohttp warns of large bytes
        async with self.http.post(url, data=data, headers=self.headers, timeout=timeout,
                                  proxy=self._proxy(url)) as answer:
            return answer.status, answer.headers, await answer.text(errors="replace")

    async def aclose(self) -> None:
        await self._keeper.aclose()  # its `finally` closes the session


async def open_session(verify: ssl.SSLContext, headers: Mapping[str, str]) -> Session:
    """A session for the running loop, closed with it: asyncio.run closes every unfinished async generator before it
    closes the loop (`loop.shutdown_asyncgens`), so the session's keeper — one — closes its connections then, while
    the loop still runs (a session left open warns "Unclosed client session" when it is collected)."""
    session = Session(verify, headers)
    await anext(session._keeper)
    return session


async def _closes_with_loop(http: aiohttp.ClientSession) -> AsyncIterator[None]:
    try:
        yield
    finally:
        await http.close()
