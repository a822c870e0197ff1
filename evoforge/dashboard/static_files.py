"""The page's files, served by fixed name from this package (and Plotly's own bundled plotly.min.js): a request
picks one of these names or gets 404, so no path from a request reaches the file system."""

from __future__ import annotations

from functools import cache
from importlib import resources

STATIC = {  # name in /static/NAME → media type
    "style.css": "text/css",
    "app.js": "text/javascript",
    "plots.js": "text/javascript",
    "overview.js": "text/javascript",
    "lineage.js": "text/javascript",
    "trial.js": "text/javascript",
    "knowledge.js": "text/javascript",
    "space.js": "text/javascript",
}
INDEX = "index.html"


@cache
def package_file(name: str) -> bytes:
    """One of the fixed files of evoforge/dashboard/static (KeyError for any other name)."""
    if name != INDEX and name not in STATIC:
        raise KeyError(name)
    return resources.files("evoforge.dashboard").joinpath("static", name).read_bytes()


@cache
def plotly_js() -> bytes:
    """plotly.min.js as the installed plotly package ships it (no CDN: the page works offline)."""
    from plotly.offline import get_plotlyjs

    return get_plotlyjs().encode("utf-8")
