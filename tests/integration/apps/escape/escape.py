"""Tries to get out of its sandbox and prints one JSON line: each attempt and what it got."""

import ctypes
import errno
import json
import os
import socket
import sys


def attempt(results: dict[str, str], name: str, action) -> None:  # type: ignore[no-untyped-def]
    try:
        action()
        results[name] = "ok"
    except OSError as e:
        results[name] = errno.errorcode.get(e.errno or 0, str(e.errno))


def execve() -> None:
    # A path that does not exist: the host answers ENOENT (the kernel looked), a seccomp
    # filter answers before any lookup.
    os.execv("/nonexistent-summon-probe", ["probe"])


def fork() -> None:
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)


def write_root() -> None:
    root = os.environ.get("SUMMON_ROOT", "/")
    with open(os.path.join(root, "escape-probe"), "w") as f:
        f.write("x")


def read_host_file() -> None:
    with open(os.environ["HOST_FILE"]) as f:
        f.read()


def reach_network() -> None:
    with socket.create_connection(("127.0.0.1", int(os.environ["HOST_PORT"])), timeout=2):
        pass


def mount() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.mount(b"none", b"/tmp", b"tmpfs", 0, None) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


def main() -> None:
    results: dict[str, str] = {}
    for name, action in [("execve", execve), ("fork", fork), ("write_root", write_root),
                         ("read_host_file", read_host_file), ("reach_network", reach_network)]:
        attempt(results, name, action)
    if os.environ.get("TRY_MOUNT"):
        attempt(results, "mount", mount)
    print("RESULTS " + json.dumps(results), flush=True)


main()
sys.exit(0)
