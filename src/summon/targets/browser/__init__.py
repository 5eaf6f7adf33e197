"""The browser target: an image as a static site whose app runs in a browser tab (Pyodide).

target.py is the Target (export, and run: a static file server for the site); site.py builds
the site from the image (bundle.py, closure.py, archive.py; refusals.py says what cannot go);
pyodide.py finds the pinned Pyodide; server.py serves a site; site/ holds the page shell,
the app's worker and the service worker; inpage/ is the Python the tab runs (the in-memory
Stack and the HTTP/1.1 bridge). See docs/browser.md.

The package imports nothing itself (target.py only when BrowserTarget is asked for), so that
`python3 -m summon.targets.browser.pyodide install` runs its module once, without runpy's
warning about a module already imported by its package, and so that a `summon run` choosing
its default target does not pay for the site builder.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from summon.targets.browser.target import BrowserTarget

__all__ = ["BrowserTarget", "default_preference"]


def default_preference() -> tuple[int, str]:
    """BrowserTarget.default_preference(): never the default (it serves a page, not the app)."""
    return 0, ""


def __getattr__(name: str) -> Any:
    if name == "BrowserTarget":
        from summon.targets.browser.target import BrowserTarget

        return BrowserTarget
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
