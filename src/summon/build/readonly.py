"""The build's word on an app that writes into the read-only image as it starts.

An image's root, its app folder /app included, is read-only. An app that writes there as it
starts (Flask's instance/ database at import, FastHTML's session key `.sesskey` in its working
folder when its script runs) fails at every start: the build says so and fails, naming the
file and where such data belongs, once when importing the entry inside the image
(verify.py) and once when the recording run's app died of it before it was exercised
(syscalls.py: a script's own start is run there only).
"""

from __future__ import annotations

import ast
import posixpath

from summon.errors import BuildError

APP_DIR = "/app"  # the image's app folder, and the app's working folder (runtime)

ADVICE = (
    "the image is read-only, its app folder /app included: keep what the app writes at "
    'start on a volume (volumes = ["/data"] in the manifest, summon run -v NAME:/data) and '
    "point the app there (a sqlite file: sqlite:////data/app.db)"
)


class ReadOnlyWrite(BuildError):
    """The app wrote into the read-only image as it started; .detail holds its last lines."""

    def __init__(self, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.detail = detail


def refused_write(output: str) -> str | None:
    """The last line of output that says the read-only image refused a write (an OSError of
    EROFS, sqlite's "readonly database"), stripped; None if none does."""
    for line in reversed(output.splitlines()):
        if "[Errno 30]" in line or "readonly database" in line:
            return line.strip()
    return None


def written_path(problem: str) -> str | None:
    """The absolute path an EROFS error names ("...: '.sesskey'" is /app/.sesskey, the app
    running in its folder), or None when it names none."""
    _, sep, quoted = problem.rpartition(": ")
    if not sep:
        return None
    try:
        path = ast.literal_eval(quoted.strip())
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return None
    if not isinstance(path, str) or not path:
        return None
    return posixpath.normpath(posixpath.join(APP_DIR, path))


def readonly_line(what: str, problem: str) -> str:
    """One line: what failed (the entry's import, the app's start), the error, the path it
    names when that was relative, and the advice."""
    path = written_path(problem)
    named = ""
    if path is not None and path not in problem:
        named = f" ({path}: the app runs in {APP_DIR})"
    return f"{what}: {problem}{named}; {ADVICE}"
