"""What every summon command prints with: the two consoles, errors, sizes, durations, progress.

One copy of each, so every verb words and formats things the same way. The consoles (rich)
are made when first used: rich takes ~30 ms to import, which `summon run` does not pay.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import signal
import sys
import time
from collections.abc import Callable, Iterator
from types import FrameType
from typing import TYPE_CHECKING, Any, NoReturn

if TYPE_CHECKING:
    from rich.console import Console

    out: Console  # standard output: tables, IDs
    err: Console  # standard error: spinners, warnings

# Progress lines on a non-terminal: a step whose text changes only in its numbers (a kernel
# build's percentage) is printed again at most this often.
PLAIN_REPEAT_SECONDS = 10.0
_NUMBERS = re.compile(r"\d+")


_consoles: dict[str, Any] = {}
# What the consoles print is printed as it is: image names, paths, error messages and the
# like can hold "[...]" or ":name:", which rich would otherwise take for markup (and drop) or
# emoji codes. A line that wants a style asks for it (markup=True, with escape() around
# whatever it quotes).
PLAIN: dict[str, Any] = {"highlight": False, "soft_wrap": True, "markup": False, "emoji": False}


def __getattr__(name: str) -> Any:
    """`out` and `err`, each made on first use (PEP 562)."""
    if name not in ("out", "err"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if name not in _consoles:
        from rich.console import Console

        class Shown(Console):
            def render_str(self, text: str, **kwargs: Any) -> Any:
                # Every string either console prints, tables' cells included, passes here.
                return super().render_str(printable(text), **kwargs)

        if name == "out":

            class Stdout(Shown):
                def on_broken_pipe(self) -> None:
                    # rich's own exits 1 without a word; a reader gone (`summon inspect web |
                    # head -1`) ends every verb as SIGPIPE ends cat (cli/main.py), as print's.
                    self.quiet = True
                    raise BrokenPipeError(errno.EPIPE, os.strerror(errno.EPIPE))

            # Piped output keeps whole rows (scripts, tests); a terminal gets rich's fitting.
            width = None if sys.stdout.isatty() else 400
            _consoles[name] = Stdout(width=width, **PLAIN)
        else:
            _consoles[name] = Shown(stderr=True, **PLAIN)
    return _consoles[name]


def printable(text: str) -> str:
    """text with each control character but newline and tab shown as its escape (\\x1b).

    Tables and reports show strings an image or an app chose (a package's name and version
    in the bill of materials, a module's reason, an instance's exit reason): an escape
    sequence among them was the terminal's to obey, rich passing ESC through (it drops only
    BEL, BS, VT, FF and CR), so an image's bill of materials could clear the screen, retitle
    the window or rewrite what `summon inspect` had printed above. (`summon logs` shows the
    app's own output through console.Visible, or writes its bytes as they are when piped.)"""
    from summon.instances.console import shown

    return shown(text)


def fail(message: str, status: int = 2, detail: str = "") -> NoReturn:
    """Print `summon: error: message` (and any detail under it) and exit with status."""
    print(f"summon: error: {message}", file=sys.stderr)
    if detail:
        print(detail.rstrip(), file=sys.stderr)
    sys.exit(status)


def warn(message: str) -> None:
    print(f"summon: warning: {message}", file=sys.stderr, flush=True)


def notice(message: str) -> None:
    """A line about what summon does (not an error): `summon: ...` on stderr."""
    print(f"summon: {message}", file=sys.stderr, flush=True)
    for heard in _hearing:
        heard.append(message)


_hearing: list[list[str]] = []


@contextlib.contextmanager
def noticed() -> Iterator[list[str]]:
    """The notice() lines said while the block runs (those `summon run` says before the
    instance exists, which its log keeps too)."""
    heard: list[str] = []
    _hearing.append(heard)
    try:
        yield heard
    finally:
        _hearing.remove(heard)


def human(n: float) -> str:
    """Decimal units, as `summon images` and `du --si` show them: 5.3 MB."""
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


def human_duration(seconds: float) -> str:
    """Docker's wording, so `ps` reads the way people expect: "3 minutes", "About an hour"."""
    s = int(seconds)
    if s < 1:
        return "Less than a second"
    if s == 1:
        return "1 second"
    if s < 60:
        return f"{s} seconds"
    minutes = s // 60
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = int(seconds / 3600 + 0.5)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // (24 * 7)} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // (24 * 30)} months"
    return f"{hours // (24 * 365)} years"


def print_json(doc: Any) -> None:
    print(json.dumps(doc, indent=2, sort_keys=True))


def animated() -> bool:
    """Whether standard error is a terminal that redraws: spinners and bars, else plain lines.

    Not on TERM=dumb (an editor's shell, a CI log viewer): rich draws nothing there until the
    end, and a build or a pull showed no step at all while it ran."""
    return sys.stderr.isatty() and os.environ.get("TERM") != "dumb"


@contextlib.contextmanager
def progress(title: str) -> Iterator[Callable[[str], None]]:
    """A spinner naming the current step on a terminal; plain step lines otherwise.

    The spinner starts with the first step: a preparation that has none (the image is
    ready) prints nothing and does not load rich. Plain lines are for logs: a step that only
    changes its numbers (45%, 46%...) is printed again only every PLAIN_REPEAT_SECONDS.
    """
    if animated():
        with contextlib.ExitStack() as stack:
            spinner: list[Any] = []

            def show(step: str) -> None:
                if not spinner:
                    spinner.append(stack.enter_context(__getattr__("err").status(title)))
                spinner[0].update(f"{title}: {step}")

            yield show
        return
    last_key, last_time = "", 0.0

    def plain(step: str) -> None:
        nonlocal last_key, last_time
        key, now = _NUMBERS.sub("#", step), time.monotonic()
        if key == last_key and now - last_time < PLAIN_REPEAT_SECONDS:
            return
        last_key, last_time = key, now
        print(f"{title}: {step}", file=sys.stderr, flush=True)

    yield plain


def open_store() -> Any:
    """The user's image store (summon.store.Store), imported when a verb needs it."""
    from summon import paths
    from summon.store import Store

    return Store(paths.store_dir())


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised where the program is, so that it unwinds as on Ctrl-C."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@contextlib.contextmanager
def termination_unwinds() -> Iterator[None]:
    """SIGTERM and SIGHUP unwind like Ctrl-C while the block runs: a build, push or pull
    killed by a CI job's timeout or a closed terminal stops what it started (a recording
    run's container) and deletes its temporaries on the way out."""

    def on_signal(signum: int, frame: FrameType | None) -> None:
        raise Terminated(signum)

    caught = (signal.SIGTERM, signal.SIGHUP)
    old = {s: signal.signal(s, on_signal) for s in caught}
    try:
        yield
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
