"""`evoforge dashboard`: serve the web dashboard over one or more runs (read-only), on 127.0.0.1 unless told
otherwise; any other host needs a token (given with --token, or generated and printed)."""

from __future__ import annotations

from typing import Annotated

import typer

from evoforge.cli_common import Command, console, fail
from evoforge.errors import EvoforgeError


def dashboard(
    runs: Annotated[list[str], typer.Argument(metavar="RUN_DIR", help="run folders (each holds record.db) or "
                                              "database URLs of records")],
    host: Annotated[str, typer.Option(help="address to bind (beyond 127.0.0.1 a token is required)")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="port to listen on")] = 8765,
    token: Annotated[str | None, typer.Option(help="token every request must carry (generated and printed when "
                                              "binding beyond the loopback without one)")] = None,
) -> None:
    """Serve the dashboard: overview, lineage tree, trial pages, knowledge, search space, run comparison, live."""
    try:
        from evoforge.dashboard.server import bind, make_server, page_url
        from evoforge.dashboard.sources import resolve_sources
    except ImportError as exc:
        fail(EvoforgeError(f"the dashboard needs its extra ({exc.name} is missing): pip install 'evoforge[dashboard]'"))
    try:
        sources = resolve_sources(runs)
    except EvoforgeError as exc:
        fail(exc)
    server, required, generated = make_server(sources, host=host, port=port, token=token)
    try:
        sock = bind(host, port)
    except OSError as exc:  # the port is taken, the address is not this machine's
        fail(EvoforgeError(f"cannot serve on {host}:{port}: {exc.strerror or exc}; try another --port or --host"))
    if generated:
        console.print(f"binding to {host}: every request needs this token: {required}", highlight=False, markup=False)
    bound_port = sock.getsockname()[1]
    console.print(f"dashboard: {page_url(host, bound_port, required)}   (Ctrl-C stops it)", highlight=False,
                  markup=False)
    with sock:
        server.run(sockets=[sock])


def register(app: typer.Typer) -> None:
    app.command(cls=Command)(dashboard)
