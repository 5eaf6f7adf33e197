"""An instance's console log: the monitor appends with a size bound; `summon logs` reads it.

The live file is logs/console.log. When it would grow past the bound, it becomes
console.log.1 (replacing the one before) and a new console.log starts: at most twice the
bound on disk, and `logs` reads the two in order. On a full disk output is dropped, counted
and noted in the log once there is room: the app's console pipe is always drained.
"""

from __future__ import annotations

import codecs
import contextlib
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

MAX_BYTES = 10 * 1024 * 1024
LOG_NAME = "console.log"

# What a terminal would obey rather than show: C0 controls but \n and \t, DEL, and C1
# (U+0080..U+009F; 0x9b alone is CSI to some terminals). Each is shown as its escape.
_SHOWN = {c: f"\\x{c:02x}" for c in [*range(0x20), *range(0x7F, 0xA0)] if c not in (9, 10)}
_SHOWN[13] = "\\r"
# Colour and style (SGR: ESC [ numbers m) is let through: it moves nothing and answers
# nothing, and every logging library's coloured levels (uvicorn's, Flask's) would be noise
# shown as escapes. A sequence cut at a chunk's end waits for the next chunk.
_SGR = re.compile(r"\x1b\[[0-9;:]{0,32}m")
_SGR_START = re.compile(r"\x1b(\[[0-9;:]{0,32})?\Z")


class Visible:
    r"""The app's bytes made safe for the operator's terminal (rule: an app's output reaches a
    terminal only as text; its escape sequences are shown, not obeyed). A hostile app
    would otherwise rewrite the screen, set the window title, or answer back into the
    shell. Control characters but \n and \t become `\x1b`-style escapes (\r `\r`),
    bytes that are not UTF-8 `\xNN`; a character split between two chunks is kept whole.
    Colours (SGR sequences) pass as they are. Only for a terminal: piped or redirected,
    `summon logs` writes the bytes unchanged."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")("backslashreplace")
        self._held = ""  # the start of a colour sequence the chunk ended in

    def feed(self, data: bytes, final: bool = False) -> bytes:
        text = self._held + self._decoder.decode(data, final)
        self._held = ""
        if not final and (cut := _SGR_START.search(text)):
            text, self._held = text[: cut.start()], text[cut.start() :]
        shown, at = [], 0
        for sgr in _SGR.finditer(text):
            shown += [text[at : sgr.start()].translate(_SHOWN), sgr.group()]
            at = sgr.end()
        shown.append(text[at:].translate(_SHOWN))
        return "".join(shown).encode()


def shown(text: str) -> str:
    """`text` (an app's line quoted in a message) with its control characters shown, as
    Visible shows them: for the gateway's log and status, which reach a terminal."""
    return text.translate(_SHOWN)


class ConsoleLog:
    """The writing end, used by the monitor only (one writer per log)."""

    def __init__(self, folder: Path, max_bytes: int = MAX_BYTES, name: str = LOG_NAME) -> None:
        self.path = folder / name
        self.old = folder / (name + ".1")
        self.max_bytes = max_bytes
        folder.mkdir(parents=True, exist_ok=True)
        self._fd = self._open()
        self._size = os.fstat(self._fd).st_size
        self._lock = threading.Lock()
        self._dropped = 0  # bytes not written since the last write that was
        self._why = ""

    def _open(self) -> int:
        return os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)

    def write(self, data: bytes) -> None:
        """Append data. When the disk is full (or the file fails otherwise) the data is
        dropped and counted, and the log says how much once it can be written again: the
        app's pipe must go on being drained, or its own writes would fail or block."""
        with self._lock:
            if self._dropped:
                note = f"[summon: {self._dropped} bytes of console output dropped ({self._why})]\n"
                if self._append(note.encode()):
                    self._dropped += len(data)
                    return
                self._dropped = 0
            self._dropped += self._append(data)

    def _append(self, data: bytes) -> int:
        """Write data; return how many bytes of it could not be written."""
        view = memoryview(data)
        try:
            if self._size and self._size + len(data) > self.max_bytes:
                self._rotate()
            while view:
                n = os.write(self._fd, view)
                view = view[n:]
                self._size += n
        except OSError as e:
            self._why = e.strerror or type(e).__name__
            return len(view)
        return 0

    def _rotate(self) -> None:
        os.replace(self.path, self.old)
        try:
            fd = self._open()
        except OSError:
            os.replace(self.old, self.path)  # go on appending to the live file
            raise
        os.close(self._fd)
        self._fd = fd
        self._size = 0

    def close(self) -> None:
        with self._lock, contextlib.suppress(OSError):
            os.close(self._fd)

    def pump(self, fd: int, close: bool = False) -> threading.Thread:
        """Copy everything read from fd (a pipe) into the log until EOF, on a daemon thread;
        close: then close the log too."""

        def run() -> None:
            try:
                while True:
                    data = os.read(fd, 65536)
                    if not data:
                        return
                    self.write(data)
            except OSError:
                return
            finally:
                os.close(fd)
                if close:
                    self.close()

        thread = threading.Thread(target=run, name="summon-console", daemon=True)
        thread.start()
        return thread


def read_all(folder: Path) -> bytes:
    """The whole log: the rotated-out part, then the live file."""
    parts = []
    for path in (folder / (LOG_NAME + ".1"), folder / LOG_NAME):
        with contextlib.suppress(FileNotFoundError):
            parts.append(path.read_bytes())
    return b"".join(parts)


def tail(data: bytes, lines: int | None) -> bytes:
    """The last `lines` lines of data (all of it for None); a last line without \\n counts."""
    if lines is None:
        return data
    if lines <= 0:
        return b""
    kept = data.splitlines(keepends=True)[-lines:]
    return b"".join(kept)


def follow(
    folder: Path, start: int, done: Callable[[], bool], poll: float = 0.1
) -> Iterator[bytes]:
    """Yield what is appended to the live log from offset start on, until done() and drained.

    Follows a rotation: when console.log is replaced, the rest of the old file is read, then
    the new file from its beginning. (Two rotations within one poll would skip the middle
    file: 10 MB in a tenth of a second is no console.)
    """
    path = folder / LOG_NAME
    f = _open_at(path, start)
    try:
        while True:
            finished = done()  # asked before reading, so the last bytes are not missed
            chunk = f.read(65536) if f else b""
            if chunk:
                yield chunk
                continue
            try:
                current = os.stat(path)
            except FileNotFoundError:
                current = None
            if f is not None and current is not None and current.st_ino != _inode(f):
                # Rotated. The writer may have added to the old file after our last read and
                # before the rename, but never after: drain it, then start on the new one.
                rest = f.read()
                if rest:
                    yield rest
                f.close()
                f = _open_at(path, 0)
                continue
            if f is None and current is not None:
                f = _open_at(path, 0)
                continue
            if finished:
                return
            time.sleep(poll)
    finally:
        if f is not None:
            f.close()


def _inode(f: IO[bytes]) -> int:
    return os.fstat(f.fileno()).st_ino


def _open_at(path: Path, offset: int) -> IO[bytes] | None:
    try:
        f = path.open("rb")
    except FileNotFoundError:
        return None
    f.seek(offset)
    return f
