"""Devices backed by the process itself: stdout console, system clock, kernel random, folder KV.

The network stacks live apart (socket_stack.py) because they need asyncio, which apps that
only log and read files should not pay for.
"""

from __future__ import annotations

import os
import sys
import time

from summon.devices import KV_RO, LEVELS, Clock, Console, InvalidKey, Random

# Not from typing: importing typing costs ~9 ms at every start.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import TextIO

    # FolderKV.list hides the builtin inside the class body.
    _Keys = list[str]


class StdoutConsole(Console):
    """A Console writing to standard output (or `stream`), dropping lines below `level`."""

    def __init__(self, level: str = "info", stream: TextIO | None = None) -> None:
        if level not in LEVELS:
            raise ValueError(f"log level {level!r} is not one of {', '.join(LEVELS)}")
        self._threshold = LEVELS.index(level)
        self._stream = stream

    def write(self, line: str) -> None:
        stream = self._stream or sys.stdout
        try:
            stream.write(line + "\n")
            stream.flush()
        except (OSError, ValueError):
            # A closed or broken stdout (ValueError: closed file) must not stop the app.
            pass

    def log(self, level: str, message: str) -> None:
        if level not in LEVELS:
            raise ValueError(f"log level {level!r} is not one of {', '.join(LEVELS)}")
        if LEVELS.index(level) >= self._threshold:
            self.write(f"{level}: {message}")


class SystemClock(Clock):
    """The kernel's clocks; sleep() runs on the current asyncio loop."""

    def time(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        import asyncio  # only async apps call this, and they have asyncio loaded already

        await asyncio.sleep(seconds)


class KernelRandom(Random):
    """os.urandom: the getrandom() system call."""

    def read(self, n: int) -> bytes:
        return os.urandom(n)


class FolderKV(KV_RO):
    """A KV_RO over the regular files below `root`, read afresh at each call.

    Symbolic links are followed only while they stay inside `root`: a key never reads a file
    outside the folder, however the folder was assembled.
    """

    def __init__(self, root: str) -> None:
        self._root = os.path.realpath(root)
        self._inside = self._root.rstrip("/") + "/"  # every real path under root starts so

    @property
    def root(self) -> str:
        return self._root

    def _file(self, key: str) -> str | None:
        """The host path of the regular file for `key`, or None."""
        path = os.path.realpath(os.path.join(self._root, check_key(key)))
        if not path.startswith(self._inside) or not os.path.isfile(path):
            return None
        return path

    def get(self, key: str) -> bytes:
        path = self._file(key)
        if path is None:
            raise KeyError(key)
        try:
            with open(path, "rb") as f:
                return f.read()
        except FileNotFoundError:
            raise KeyError(key) from None

    def size(self, key: str) -> int:
        path = self._file(key)
        if path is None:
            raise KeyError(key)
        try:
            return os.stat(path).st_size
        except FileNotFoundError:
            raise KeyError(key) from None

    def exists(self, key: str) -> bool:
        return self._file(key) is not None

    def list(self, prefix: str = "") -> _Keys:
        # A prefix is the start of a key: every component before the last must be valid,
        # while the last may be cut anywhere (".h" for ".htaccess") or be empty (after '/').
        if prefix.startswith("/") or "\0" in prefix:
            raise InvalidKey(f"invalid prefix {prefix!r}: prefixes start keys such as 'css/'")
        head = prefix.rpartition("/")[0]
        if head:
            check_key(head)
        keys: _Keys = []
        self._walk(self._root, "", prefix, keys, frozenset((self._root,)))
        keys.sort()
        return keys

    def _walk(
        self, folder: str, base: str, prefix: str, keys: _Keys, above: frozenset[str]
    ) -> None:
        try:
            with os.scandir(folder) as it:
                entries = list(it)
        except OSError:
            return
        for entry in entries:
            key = base + entry.name
            # Only descend where the key could still start with the prefix.
            if not (key.startswith(prefix) or prefix.startswith(key + "/")):
                continue
            real = os.path.realpath(entry.path)
            if not real.startswith(self._inside):
                continue
            if os.path.isdir(real):
                if real not in above:  # a link back up the tree would walk forever
                    self._walk(real, key + "/", prefix, keys, above | {real})
            elif os.path.isfile(real) and key.startswith(prefix):
                keys.append(key)


def check_key(key: str) -> str:
    """Return `key` if it is a valid KV key, else raise InvalidKey saying why."""
    if not isinstance(key, str) or not key:
        raise InvalidKey(f"invalid key {key!r}: keys are non-empty strings")
    if key.startswith("/"):
        raise InvalidKey(f"invalid key {key!r}: keys are relative paths such as 'css/site.css'")
    if "\0" in key:
        raise InvalidKey(f"invalid key {key!r}: keys may not hold NUL")
    for part in key.split("/"):
        if part in ("", ".", ".."):
            raise InvalidKey(f"invalid key {key!r}: empty, '.' and '..' components are not allowed")
    return key
