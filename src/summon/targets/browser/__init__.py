"""The browser target: an image as a static site whose app runs in a browser tab (Pyodide).

target.py is the Target (export, and run: a static file server for the site); site.py builds
the site from the image (bundle.py, closure.py, archive.py; refusals.py says what cannot go);
pyodide.py finds the pinned Pyodide; server.py serves a site; site/ holds the page shell,
the app's worker and the service worker; inpage/ is the Python the tab runs (the in-memory
Stack and the HTTP/1.1 bridge). See docs/browser.md.

The package imports nothing itself (the registry names target.py), so that
`python3 -m summon.targets.browser.pyodide install` runs its module once, without runpy's
warning about a module already imported by its package.
"""
