"""The run browser's Starlette app: read-only GET routes over a store, its assets served from the package."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from .pages import HERE, Pages, make_templates
from .source import BrowserSource

CACHE = {"Cache-Control": "public, max-age=86400"}


def plotly_js_path() -> Path:
    """Plotly's minified JavaScript, as the ``plotly`` Python package ships it (MIT licence)."""
    import importlib.resources

    return Path(str(importlib.resources.files("plotly") / "package_data" / "plotly.min.js"))


def create_app(store_path: Path) -> Starlette:
    """The app over ``store_path`` (StoreUnusable, one line, when it is not a store this version can read)."""
    source = BrowserSource(store_path)
    pages = Pages(source, make_templates())
    plotly_js = plotly_js_path()

    def plotly(request: Request) -> Response:
        return FileResponse(plotly_js, media_type="text/javascript", headers=CACHE)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            source.close()

    routes = [
        Route("/", pages.runs, name="runs"),
        Route("/api/runs", pages.runs_json),
        Route("/runs/{run_id}", pages.run, name="run"),
        Route("/api/runs/{run_id}/stamp", pages.run_stamp),
        Route("/runs/{run_id}/candidates/{candidate_id}", pages.candidate, name="candidate"),
        Route("/runs/{run_id}/compare", pages.compare, name="compare"),
        Route("/assets/plotly.min.js", plotly),
        Mount("/assets", StaticFiles(directory=HERE / "static"), name="assets"),
    ]
    return Starlette(routes=routes, exception_handlers={404: pages.not_found}, lifespan=lifespan,
                     middleware=[Middleware(GZipMiddleware, minimum_size=1000)])
