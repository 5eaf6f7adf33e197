"""What runs inside the browser tab, in Pyodide: the in-memory Stack, the HTTP/1.1 bridge to
the service worker, the app's boot, and the trace the export runs under Node.

The site carries this package as `summon_browser` (its modules import each other relatively),
beside the image's own summon runtime; the unit tests import it from here under CPython.
Stdlib only, like summon.runtime: it is what the tab downloads and runs.
"""
