"""uuid.uuid1() in a sealed sandbox: answered, and nothing refused on the way.

libuuid's uuid_generate_time_safe looks for the uuidd daemon and a MAC address (socket, umask,
getppid: calls the build's recording run never made, as it never asks /id), so a request's
first uuid1() said three refusals of the sandbox's seccomp allowlist ("summon: sandbox:
refused socket ..."); without libuuid, uuid.getnode() runs programs, which the seal's
seal.program refuses. The runtime gives uuid a random node before the seal (findlib.py).
"""

from __future__ import annotations

import time
import urllib.request
import uuid
from collections.abc import Iterator

import pytest
from hostile_apps import APPS, needs_sandbox
from summon_cli import Summon, free_port

pytestmark = [*needs_sandbox, pytest.mark.slow]


@pytest.fixture(scope="module")
def served(summon: Summon) -> Iterator[tuple[list[str], str]]:
    """The /id answers of a sealed instance, and everything it said."""
    summon.ok("build", str(APPS / "uuid1"), "-t", "uuid1:test")
    port = free_port()
    proc = summon.popen("run", "uuid1:test", "--target", "sandbox", "-p", f"{port}:8000")
    answers: list[str] = []
    deadline = time.monotonic() + 30
    try:
        while len(answers) < 3:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/id", timeout=5) as r:
                    answers.append(r.read().decode())
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    break
                time.sleep(0.05)
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=30)
    yield answers, err + out


def test_uuid1_answers_after_the_seal(served: tuple[list[str], str]) -> None:
    answers, err = served
    assert len(answers) == 3, err
    made = [uuid.UUID(a) for a in answers]
    assert all(u.version == 1 for u in made), answers
    assert made[0].time < made[1].time < made[2].time, answers  # increasing, one process
    assert len({u.node for u in made}) == 1 and made[0].node & (1 << 40), answers  # random node


def test_uuid1_trips_no_rule(served: tuple[list[str], str]) -> None:
    """Neither the sandbox's allowlist (seccomp: socket, umask, getppid) nor the seal's rules
    (seal.program for a program, seal.write for libuuid's clock file) refuse anything."""
    _answers, err = served
    refused = [line for line in err.splitlines() if "refused" in line]
    assert refused == [], err
    assert "serving the WSGI app" in err, err
