"""The guest's side of a snapshot, on the host: the snapshot point, the resume message, reseeding.

What the kernel does with the reseeding (RNDADDENTROPY, RNDRESEEDCRNG, clock_settime) is
tested in real VMs by tests/integration/test_qemu_snapshot.py; here the order of the calls,
the message's grammar, and what the process reseeds itself.
"""

from __future__ import annotations

import asyncio
import os
import random
from pathlib import Path
from typing import Any

import pytest

from summon.runtime import resume, vm
from summon.targets.qemu.serial import SerialConsole, resume_message

MARK = vm.MARK.encode()


@pytest.fixture(autouse=True)
def clean(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(resume, "_hooks", [])
    monkeypatch.setattr(vm, "_snapshot_point", False)


def test_the_hosts_resume_message_parses_in_the_guest() -> None:
    line = resume_message()
    assert line.startswith(MARK + vm.RESUME_PREFIX.encode()) and line.endswith(b"\n")
    r, w = os.pipe()
    try:
        os.write(w, b"noise before\n" + line)
        parsed = vm.read_resume_message(r)
    finally:
        os.close(r)
        os.close(w)
    assert parsed is not None
    clock, entropy = parsed
    assert abs(clock / 1e9 - __import__("time").time()) < 60
    assert len(entropy) == vm.RESUME_ENTROPY
    assert resume_message() != line  # fresh entropy each time


@pytest.mark.parametrize(
    "body",
    [b"", b"123", b"abc 00ff", b"123 zz", b"123 00", b"1 2 3", "١٢٣ 0011223344556677".encode()],
)
def test_a_malformed_resume_body_is_not_taken(body: bytes) -> None:
    assert vm.parse_resume(body) is None


def test_the_end_of_the_line_without_a_message_is_none() -> None:
    r, w = os.pipe()
    os.write(w, b"\x1esummon-resume nonsense\n")
    os.close(w)
    try:
        assert vm.read_resume_message(r) is None
    finally:
        os.close(r)


def test_resumed_reseeds_random_and_runs_every_hook() -> None:
    random.seed(1234)
    state = random.getstate()
    called: list[str] = []

    @resume.on_resume
    def first() -> None:
        called.append("first")

    def broken() -> None:
        raise RuntimeError("no luck")

    resume.on_resume(broken)
    resume.on_resume(lambda: called.append("last"))
    failures = resume.resumed()
    assert random.getstate() != state
    assert called == ["first", "last"]  # a broken hook does not stop the others
    assert failures == ["resume hook test_resumed_reseeds_random_and_runs_every_hook.<locals>."
                        "broken raised RuntimeError: no luck"]  # fmt: skip
    resume.forget(broken)
    assert resume.resumed() == []


def test_resumed_renews_tempfiles_name_generator() -> None:
    import tempfile

    tempfile._get_candidate_names()  # type: ignore[attr-defined]
    assert tempfile._name_sequence is not None  # type: ignore[attr-defined]
    resume.resumed()
    assert tempfile._name_sequence is None  # type: ignore[attr-defined]


def test_the_kernel_is_reseeded_in_order(monkeypatch: pytest.MonkeyPatch) -> None:
    """Host bytes mixed in, the hwrng's credited, then the generators rekeyed: in that order."""
    calls: list[tuple[Any, ...]] = []
    fds = {"/dev/random": 901}
    monkeypatch.setattr(vm.os, "open", lambda path, flags: fds[path])
    monkeypatch.setattr(vm.os, "write", lambda fd, data: calls.append(("write", fd, data)))
    monkeypatch.setattr(vm.os, "close", lambda fd: None)
    monkeypatch.setattr(vm, "seed_entropy", lambda: calls.append(("hwrng",)))
    import fcntl

    monkeypatch.setattr(fcntl, "ioctl", lambda fd, op, *a: calls.append(("ioctl", fd, op)))
    vm.reseed_kernel(b"\x01" * 32)
    assert calls == [("write", 901, b"\x01" * 32), ("hwrng",), ("ioctl", 901, 0x5207)]


class FakeServer:
    port = 80


class FakeStack:
    def __init__(self) -> None:
        self.listened = 0

    async def start_server(self, cb: object, port: int) -> FakeServer:
        self.listened += 1
        return FakeServer()


def test_the_snapshot_point_is_the_stacks_first_listen(monkeypatch: pytest.MonkeyPatch) -> None:
    said: list[str] = []
    resumed: list[tuple[int, bytes]] = []
    read_from: list[int] = []
    monkeypatch.setattr(vm, "control_line", said.append)
    monkeypatch.setattr(vm, "_control", 7)

    def read_resume_message(fd: int) -> tuple[int, bytes]:
        read_from.append(fd)
        return 5, b"e" * 32

    monkeypatch.setattr(vm, "read_resume_message", read_resume_message)
    monkeypatch.setattr(vm, "resume", lambda clock, entropy: resumed.append((clock, entropy)))
    untouched = FakeStack()
    assert vm.watch_stack(untouched).start_server == untouched.start_server  # not asked for
    monkeypatch.setattr(vm, "_snapshot_point", True)
    stack = vm.watch_stack(FakeStack())

    async def listen_twice() -> None:
        await stack.start_server(None, 80)
        await stack.start_server(None, 81)

    asyncio.run(listen_twice())
    assert stack.listened == 2
    assert said == [f"{vm.APP_UP} 80/tcp"]  # once, at the first
    assert read_from == [7]  # the control port, not the app's stdin
    assert resumed == [(5, b"e" * 32)]


def test_the_host_reads_the_points_and_acknowledgements() -> None:
    console = SerialConsole()
    console.control(MARK + f"{vm.APP_UP} 80/tcp\r\n".encode())
    assert console.app_up == "80/tcp"
    console.control(MARK + vm.RESUMED.encode() + b"\r\n")
    assert console.resumed == 1


def test_resume_imports_only_sys_at_module_level() -> None:
    """Registering a hook costs nothing at start: the module imports sys and nothing else."""
    source = Path(resume.__file__).read_text()
    top = [line for line in source.splitlines() if line.startswith(("import ", "from "))]
    assert top == ["from __future__ import annotations", "import sys"]
