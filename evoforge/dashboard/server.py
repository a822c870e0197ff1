"""Serving the dashboard with uvicorn: the host/token rule, the address to open, and a server that can run in a
background thread (the tests) or in the foreground (`evoforge dashboard`)."""

from __future__ import annotations

from collections.abc import Sequence

import uvicorn

from evoforge.dashboard.app import create_app
from evoforge.dashboard.security import token_for
from evoforge.dashboard.sources import RunSource


def page_url(host: str, port: int, token: str | None) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/" + (f"?token={token}" if token else "")


def make_server(sources: Sequence[RunSource], *, host: str = "127.0.0.1", port: int = 8765,
                token: str | None = None, poll_s: float = 1.0) -> tuple[uvicorn.Server, str | None, bool]:
    """A uvicorn server over the app, the token it requires (None on loopback without one) and whether the token
    was generated here (so the caller prints it)."""
    token, generated = token_for(host, token)
    app = create_app(sources, token=token, poll_s=poll_s)
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False,
                            timeout_graceful_shutdown=2, lifespan="off")
    return uvicorn.Server(config), token, generated
