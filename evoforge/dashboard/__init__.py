"""The dashboard: a read-only web UI over one or more runs' records (overview, lineage tree, trial pages, knowledge,
search space, run comparison, live updates). `evoforge dashboard RUN_DIR` serves it; `create_app` builds the app."""

from evoforge.dashboard.app import create_app
from evoforge.dashboard.sources import RunSource, resolve_sources

__all__ = ["RunSource", "create_app", "resolve_sources"]
