"""The access log line and the hints under an app's traceback."""

from __future__ import annotations

import errno
import subprocess

import pytest

from summon.runtime import hints
from summon.runtime.http.log import METHOD_LOGGED, TARGET_LOGGED, access_line
from summon.runtime.http.protocol import Exchange


def test_an_over_long_target_is_cut_in_the_access_log() -> None:
    # A refused 20 KB URI (414) made a 20 KB log line per request: an amplifier.
    exchange = Exchange(b"GET", b"/" + b"a" * 20000, b"1.1", 414, 20, 0.0, 0.001)
    line = access_line("10.0.0.1", exchange, wall=0.0)
    assert len(line) < TARGET_LOGGED + 200
    assert f'"GET /{"a" * (TARGET_LOGGED - 1)}...(20001 bytes) HTTP/1.1" 414 20 ' in line
    # So is a 20 KB method (h11 reads any token as one).
    exchange = Exchange(b"X" * 20000, b"/", b"1.1", 414, 20, 0.0, 0.001)
    line = access_line("10.0.0.1", exchange, wall=0.0)
    assert len(line) < 200 and f'"{"X" * METHOD_LOGGED}...(20000 bytes) / HTTP/1.1"' in line


def test_subprocess_denied_its_process_gets_the_exec_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    # Popen._execute_child calls _fork_exec (3.11): its name was not among the known ones,
    # so an uncaught subprocess.run in a handler had no hint, while os.execv had one.
    def denied(*args: object) -> None:
        raise PermissionError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(subprocess, "_fork_exec", denied)
    monkeypatch.setattr(subprocess, "_USE_POSIX_SPAWN", False)
    with pytest.raises(PermissionError) as info:
        subprocess.run(["/bin/true"], check=False)
    # The innermost frame is the denied stand-in; the real one raises from C, in the frame
    # of _execute_child: point the hint at that frame, as the sandbox's EPERM would.
    tb = info.value.__traceback__
    assert tb is not None
    while tb.tb_next is not None and tb.tb_next.tb_frame.f_code.co_name != "denied":
        tb = tb.tb_next
    tb.tb_next = None
    assert hints.sandbox_hint(info.value) == hints.EXEC_HINT


def test_subprocess_refused_at_its_pipe_gets_the_exec_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    # Every image holds subprocess, so the sandbox does not let its pipes through: Popen
    # fails at os.pipe, before any fork; the hint must still say what is denied.
    import os

    def denied() -> tuple[int, int]:
        raise PermissionError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "pipe", denied)
    with pytest.raises(PermissionError) as info:
        subprocess.run(["/bin/true"], stdout=subprocess.PIPE, check=False)
    assert hints.sandbox_hint(info.value) == hints.EXEC_HINT
    with pytest.raises(PermissionError) as other:
        os.pipe()  # not from subprocess: no hint
    assert hints.sandbox_hint(other.value) is None
