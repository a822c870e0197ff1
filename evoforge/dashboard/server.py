"""Serving the dashboard with uvicorn: the host/token rule, the address to open, and a server that can run in a
background thread (the tests) or in the foreground (`evoforge dashboard`)."""

from __future__ import annotations

import socket
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


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on host:port (port 0: a free one), bound before the server starts so that a taken port
    or a foreign address is one OSError here, not a uvicorn exit."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock
