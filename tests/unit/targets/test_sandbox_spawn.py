"""spawn(): runc started with summon's fds at 3, 4, ... (its --preserve-fds), no shell."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from summon.targets.sandbox.spawn import spawn

# What the child finds: the socket at each fd from 3 on, and its session.
REPORT = """
import json, os, socket
fds = {}
for fd in range(3, 8):
    try:
        s = socket.socket(fileno=os.dup(fd))
    except OSError:
        continue
    fds[fd] = s.getsockname()[1]
    s.close()
print(json.dumps({"fds": fds, "leader": os.getsid(0) == os.getpid()}))
"""


def _listening() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    return sock


def test_the_fds_land_at_3_on_in_order_and_nothing_else_does(tmp_path: Path) -> None:
    out = tmp_path / "out"
    # Take fds 3-5 here first, so the sockets get higher numbers than where they go.
    fillers = [os.open(os.devnull, os.O_RDONLY) for _ in range(3)]
    a, b = _listening(), _listening()
    stray = _listening()  # not handed over: it must not reach the child
    try:
        with open(out, "wb") as output:
            child = spawn(
                [sys.executable, "-c", REPORT], [b.fileno(), a.fileno()], output.fileno()
            )
            assert child.wait(30) == 0 and child.returncode == 0
        seen = json.loads(out.read_text())
        assert seen["fds"] == {"3": b.getsockname()[1], "4": a.getsockname()[1]}
        assert seen["leader"]
        assert a.fileno() > 0 and b.fileno() > 0  # still open here: the caller closes them
    finally:
        for sock in (a, b, stray):
            sock.close()
        for fd in fillers:
            os.close(fd)


def test_runc_gets_sigpipe_and_sigxfsz_back_as_subprocess_gives_them(tmp_path: Path) -> None:
    """Python ignores SIGPIPE (and SIGXFSZ); an ignored signal stays ignored across exec, so
    spawn resets them, as subprocess's restore_signals does (SigIgn read by a program that
    does not touch them)."""
    out = tmp_path / "status"
    with open(out, "wb") as output:
        child = spawn(["/bin/sh", "-c", "grep SigIgn /proc/self/status"], [], output.fileno())
        assert child.wait(30) == 0
    ignored = int(out.read_text().split()[1], 16)
    assert not ignored & (1 << (signal.SIGPIPE - 1)) and not ignored & (1 << (signal.SIGXFSZ - 1))


def test_poll_wait_timeout_and_a_signal_status() -> None:
    child = spawn([sys.executable, "-c", "import time; time.sleep(30)"], [], None)
    assert child.poll() is None
    with pytest.raises(subprocess.TimeoutExpired):
        child.wait(0.05)
    child.kill()
    assert child.wait(10) == -9 and child.poll() == -9
    child.kill()  # waited for already: nothing is signalled


def test_a_missing_program_is_an_error_not_a_child() -> None:
    with pytest.raises(FileNotFoundError):
        spawn(["summon-no-such-program"], [], None)


def test_a_thread_waiting_does_not_block_another_from_polling_and_killing() -> None:
    """The monitor waits for runc on one thread while stop() polls and kills from another:
    the poll must answer at once (as Popen's does), or the stop never comes."""
    child = spawn([sys.executable, "-c", "import time; time.sleep(60)"], [], None)
    statuses: list[int] = []
    waiter = threading.Thread(target=lambda: statuses.append(child.wait()))
    waiter.start()
    time.sleep(0.2)  # the waiter is in waitpid by now
    started = time.monotonic()
    assert child.poll() is None
    child.kill()
    waiter.join(10)
    assert time.monotonic() - started < 5 and statuses == [-9]


def test_output_keeps_its_file_when_its_number_is_one_the_fds_move_to(tmp_path: Path) -> None:
    """A console file opened early often has fd 3, where the first fd goes: stdout and
    stderr must be the file, and fd 3 the socket, not the other way round."""
    out = tmp_path / "out"
    with open(out, "wb") as output, _listening() as sock:
        n = output.fileno()
        fds = [sock.fileno()] * (n - 2)  # so that fd n in the child is one of them
        code = (
            "import os, stat, sys; "
            f"ok = stat.S_ISSOCK(os.fstat({n}).st_mode) and stat.S_ISREG(os.fstat(1).st_mode)"
            " and stat.S_ISREG(os.fstat(2).st_mode); print('ok' if ok else 'wrong')"
        )
        child = spawn([sys.executable, "-c", code], fds, n)
        assert child.wait(30) == 0
    assert out.read_text() == "ok\n"


# Run in a fresh interpreter, whose fds 3 and 4 are free to take: the two sockets sit where
# the other is to go (3 <-> 4), with the exec gate's thread running, as in the monitor.
SWAP = """
import json, os, socket, subprocess, sys, threading
from summon.targets.sandbox.spawn import spawn
a, b = socket.socket(), socket.socket()
for s in (a, b):
    s.bind(("127.0.0.1", 0))
    s.listen()
os.dup2(a.fileno(), 3)
os.dup2(b.fileno(), 4)
threading.Thread(target=threading.Event().wait, daemon=True).start()
with open(sys.argv[1], "wb") as out:
    child = spawn([sys.executable, "-c", sys.argv[2]], [4, 3], out.fileno())
    assert child.wait(30) == 0
print(json.dumps([b.getsockname()[1], a.getsockname()[1]]))
"""


def test_fds_sitting_where_each_other_goes_are_swapped_not_lost(tmp_path: Path) -> None:
    """fds [4, 3] go to 3 and 4: moved one by one with no copies first, the second move
    would find fd 3 already overwritten, and both numbers would hold the same socket."""
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "-c", SWAP, str(out), REPORT],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    want = json.loads(result.stdout)
    got = json.loads(out.read_text())
    assert got["fds"] == {"3": want[0], "4": want[1]}
