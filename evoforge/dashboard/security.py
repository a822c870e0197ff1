"""Who may read the dashboard: an optional token checked on every request (query `?token=`, an
`Authorization: Bearer` header, or the cookie the first good request sets), and the rule that binding beyond the
loopback needs one."""

from __future__ import annotations

import hmac
import ipaddress
import secrets

from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.types import ASGIApp

COOKIE = "evoforge_dashboard_token"
LOOPBACK_NAMES = {"localhost"}


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and `localhost`; anything else (0.0.0.0, a LAN address, a name) is not."""
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def token_for(host: str, token: str | None) -> tuple[str | None, bool]:
    """The token to require for a server on `host`, and whether it was generated here (to print it): loopback
    needs none unless one is given; any other host gets the given one or a new random one."""
    if token:
        return token, False
    if is_loopback(host):
        return None, False
    return secrets.token_urlsafe(24), True


class TokenMiddleware(BaseHTTPMiddleware):
    """Refuses (401) every request that does not carry the token; a good `?token=` sets a same-site cookie so the
    page's scripts and API calls are let in too."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        super().__init__(app)
        self.token = token

    def _given(self, request: Request) -> tuple[str | None, bool]:
        query = request.query_params.get("token")
        if query:
            return query, True
        auth = request.headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            return auth[7:].strip(), False
        return request.cookies.get(COOKIE), False

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        given, from_query = self._given(request)
        if not given or not hmac.compare_digest(given.encode(), self.token.encode()):
            return PlainTextResponse("a valid token is required: open the URL the dashboard printed "
                                     "(…/?token=…)", status_code=401)
        response = await call_next(request)
        if from_query:
            response.set_cookie(COOKIE, self.token, httponly=True, samesite="strict")
        return response
