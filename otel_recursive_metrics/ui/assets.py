"""The files the web view serves: its pages and scripts (in ``static/``) and Plotly's bundle.

Plotly's JavaScript comes from the installed ``plotly`` Python package, whose wheel ships the
minified bundle as ``plotly/package_data/plotly.min.js``: it is found on disk without importing
plotly (which is slow to import and not needed here), and served as ``/static/plotly.min.js``.
Nothing is fetched from the internet and nothing is built at install time.

Only the names listed here are served; a request for any other name is a 404, so no path in a
URL can reach a file outside these.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

__all__ = ["PAGES", "STATIC", "plotly_bundle", "static_file"]

STATIC = Path(__file__).resolve().parent / "static"

#: The HTML shell of each page.
PAGES = {"runs": "runs.html", "run": "run.html", "compare": "compare.html", "params": "params.html"}

_SCRIPTS = (
    "common.js",
    "colors.js",
    "series_data.js",
    "plots.js",
    "charts.js",
    "controls.js",
    "runs.js",
    "run_page.js",
    "compare_page.js",
    "params.js",
)
_SERVED = frozenset({*PAGES.values(), *_SCRIPTS, "style.css"})

PLOTLY_BUNDLE = "plotly.min.js"


def plotly_bundle() -> Path | None:
    """Where the installed plotly package keeps ``plotly.min.js`` (None if plotly is not installed)."""
    spec = importlib.util.find_spec("plotly")
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        path = Path(folder) / "package_data" / PLOTLY_BUNDLE
        if path.is_file():
            return path
    return None


def static_file(name: str) -> Path | None:
    """The file served as ``/static/<name>``, or None if there is none by that name."""
    if name == PLOTLY_BUNDLE:
        return plotly_bundle()
    if name not in _SERVED:
        return None
    path = STATIC / name
    return path if path.is_file() else None
