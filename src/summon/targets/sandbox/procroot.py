"""Reading a file the app writes in its own /tmp, from the host, through /proc/PID/root.

The file's name is the app's to make anything of. Opened plainly, a symbolic link there is
followed by the host's process, as root, and an absolute target is resolved from the *host's*
root, not the instance's: `/tmp/summon-stats -> /dev/zero` had the CLI or the gateway read
without end, `-> /etc/shadow` read a host file, `-> /dev/watchdog` would open a host device.
So the last name is opened without following a link, without blocking (a FIFO), and only a
regular file is read, at most `limit` bytes. The folders above it must not be the app's to
change: /tmp is a mount point of the instance (the image's root is read-only).
"""

from __future__ import annotations

import os
import stat

OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC


def read_file(pid: int, path: str, limit: int) -> bytes | None:
    """The content of the regular file `path` inside instance `pid`; None when there is none,
    it is anything but a regular file (a link, a FIFO, a socket), or it holds more than
    `limit` bytes."""
    try:
        fd = os.open(f"/proc/{pid}/root{path}", OPEN_FLAGS)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        data = os.read(fd, limit + 1)
    except OSError:
        return None
    finally:
        os.close(fd)
    return data if len(data) <= limit else None
