"""The dashboard's web app: the page, its static files, and a read-only JSON API under /api (documented by
FastAPI's OpenAPI at /openapi.json) over the runs given, with server-sent events for live runs."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from typing import Annotated, Any

import anyio
from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import Response, StreamingResponse

from evoforge import __version__
from evoforge.dashboard import knowledge as kb_view
from evoforge.dashboard import overview as ov
from evoforge.dashboard import space as space_view
from evoforge.dashboard.queries import change_mark, trial_summaries
from evoforge.dashboard.security import TokenMiddleware
from evoforge.dashboard.sources import RunSource
from evoforge.dashboard.static_files import INDEX, STATIC, package_file, plotly_js
from evoforge.dashboard.trial_page import trial_page

NO_CACHE = {"Cache-Control": "no-store"}
# The page's own policy: scripts from this server only (no inline script, no eval), nothing fetched elsewhere.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
       "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'")


def create_app(sources: Sequence[RunSource], *, token: str | None = None, poll_s: float = 1.0) -> FastAPI:
    """The app over `sources` (at least one); with `token`, every request must carry it (see security.py)."""
    runs = {s.key: s for s in sources}
    app = FastAPI(title="evoforge dashboard", version=__version__, docs_url=None, redoc_url=None,
                  description="Read-only views of evoforge runs: overview, lineage, trials, knowledge, search space.")
    if token:
        app.add_middleware(TokenMiddleware, token=token)

    def source(run: str) -> RunSource:
        found = runs.get(run)
        if found is None:
            raise HTTPException(404, f"no run {run!r}: the dashboard serves runs {', '.join(runs)}")
        return found

    @app.middleware("http")
    async def headers(request: Request, call_next: Any) -> Response:
        response = await call_next(request)
        response.headers.setdefault("Content-Security-Policy", CSP)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        return response

    @app.get("/", include_in_schema=False)
    def index() -> Response:
        return Response(package_file(INDEX), media_type="text/html; charset=utf-8", headers=NO_CACHE)

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> Response:
        return Response(status_code=204)

    @app.get("/static/{name}", include_in_schema=False)
    def static(name: str) -> Response:
        if name == "plotly.min.js":
            return Response(plotly_js(), media_type="text/javascript")
        if name not in STATIC:
            raise HTTPException(404, "no such file")
        return Response(package_file(name), media_type=STATIC[name], headers=NO_CACHE)

    @app.get("/api/runs", summary="The runs this dashboard serves")
    def list_runs() -> list[dict[str, Any]]:
        out = []
        for s in sources:
            with s.record() as record:
                info = record.run_info()
                counts = record.counts()
            out.append({"run": s.key, "label": s.label, "task": info.task_name, "total": sum(counts.values()),
                        "started_at": info.created_at.isoformat()})
        return out

    @app.get("/api/runs/{run}/overview", summary="Counts, best score over trials and time, spend, time saved")
    def get_overview(run: str) -> dict[str, Any]:
        return ov.overview(source(run))

    @app.get("/api/runs/{run}/trials", summary="Trial summaries with id > since (poll for new trials)")
    def get_trials(run: str, since: Annotated[int, Query(ge=0)] = 0) -> list[dict[str, Any]]:
        with source(run).record() as record:
            return trial_summaries(record, since)

    @app.get("/api/runs/{run}/lineage", summary="The parent → child tree, laid out, with the best path")
    def get_lineage(run: str) -> dict[str, Any]:
        return ov.lineage(source(run))

    @app.get("/api/runs/{run}/trials/{trial_id}", summary="One trial in full")
    def get_trial(run: str, trial_id: int) -> dict[str, Any]:
        data = trial_page(source(run), trial_id)
        if data is None:
            raise HTTPException(404, f"no trial {trial_id} in run {run}")
        return data

    @app.get("/api/runs/{run}/knowledge", summary="The run's knowledge base, searched by words")
    def get_knowledge(run: str, q: Annotated[str, Query(max_length=500)] = "",
                      kind: str | None = None) -> dict[str, Any]:
        return kb_view.knowledge(source(run), q, kind)

    @app.get("/api/runs/{run}/search-space", summary="MAP-Elites grid and islands")
    def get_space(run: str) -> dict[str, Any]:
        return space_view.search_space(source(run))

    @app.get("/api/compare", summary="Best-so-far curves and cost per improvement of several runs")
    def get_compare(run: Annotated[list[str] | None, Query()] = None) -> dict[str, Any]:
        chosen = [source(r) for r in run] if run else list(sources)
        return ov.compare(chosen)

    @app.get("/api/runs/{run}/events", summary="Server-sent events: `trials` whenever trials are added or finish")
    async def events(run: str, request: Request, since: Annotated[int, Query(ge=0)] = 0
                     ) -> StreamingResponse:
        chosen = source(run)
        stream = _trial_events(chosen, request, since, poll_s)
        return StreamingResponse(stream, media_type="text/event-stream", headers=NO_CACHE)

    return app


def _poll(source: RunSource, mark: tuple[Any, ...] | None) -> tuple[tuple[Any, ...], list[dict[str, Any]] | None]:
    """The record's change mark, and the trials only when the mark moved."""
    with source.record() as record:
        now = change_mark(record)
        return now, (trial_summaries(record) if now != mark else None)


async def _trial_events(source: RunSource, request: Request, since: int, poll_s: float) -> AsyncIterator[str]:
    """Polls the record every `poll_s` while the client listens; sends the trials that are new or changed status
    (the first event: where the run stands, with the trials after `since`)."""
    seen: dict[int, str] | None = None
    mark: tuple[Any, ...] | None = None
    while not await request.is_disconnected():
        mark, trials = await anyio.to_thread.run_sync(_poll, source, mark)
        if trials is not None:
            if seen is None:
                changed = [t for t in trials if t["id"] > since]
            else:
                changed = [t for t in trials if seen.get(t["id"]) != t["status"]]
            seen = {t["id"]: t["status"] for t in trials}
            payload = {"trials": changed, "total": len(trials), "max_id": trials[-1]["id"] if trials else 0}
            yield f"event: trials\ndata: {json.dumps(payload)}\n\n"
        await asyncio.sleep(poll_s)
