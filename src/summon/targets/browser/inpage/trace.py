"""The export's trace: boot the app in Pyodide under Node, answer one request, list modules.

site/trace.js (run by the export under Node, with Pyodide's whole stdlib) calls run(); the
modules loaded by then, Pyodide's own start-up included, are what the site's pruned stdlib
must hold. The list is taken before anything here imports a module of its own (json), so
the trace's own needs do not leak into the site.
"""

from __future__ import annotations

import sys

from .boot import BrowserApp


async def run(root: str = "/") -> str:
    """JSON: {"python", "builtin", "modules": {name: file or null}, "status", "error"}."""
    error = ""
    status = 0
    failure: Exception | None = None
    try:
        app = BrowserApp(root, answer_timeout=20.0)
        await app.start()
        response = await app.exchange("GET", "/", [("Accept", "text/html")], b"", "localhost")
        status = response.status
    except Exception as e:  # the export reports it as one line
        error = f"{type(e).__name__}: {e}"
        failure = e
    modules = {name: getattr(m, "__file__", None) for name, m in list(sys.modules.items())}
    import json  # only now: the trace's own import must not count

    return json.dumps(
        {
            "python": ".".join(str(n) for n in sys.version_info[:3]),
            "builtin": sorted(sys.builtin_module_names),
            "modules": modules,
            "status": status,
            "error": error,
            "summary": summary(failure.__cause__)
            if failure is not None and isinstance(failure.__cause__, Exception)
            else "",
        }
    )


def summary(cause: Exception) -> str:
    """One line for the export's error, of what the app raised (the boot's AppFailed wraps
    it): the line of the app's it came from, then the exception with the first line of its
    message (Pyodide's run on over several)."""
    import traceback  # only now, as json

    message = (str(cause).strip().splitlines() or [""])[0]
    line = f"{type(cause).__name__}: {message}" if message else type(cause).__name__
    frames = traceback.extract_tb(cause.__traceback__)
    return f"{frames[-1].filename}:{frames[-1].lineno}: {line}" if frames else line
