"""The seccomp gate's judgement of a notified call, and how it says refusals (without a kernel)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from summon.targets.sandbox import gate

AF_INET, AF_NETLINK, AF_VSOCK = 2, 16, 40
NETLINK_ROUTE = 0
NR_SOCKET, NR_UNAME, NR_INOTIFY_INIT1 = 41, 63, 294
NR_CLONE, NR_FORK, NR_VFORK = 56, 57, 58
NR_RESTART_SYSCALL = 219
# glibc's fork(): clone(CLONE_CHILD_SETTID | CLONE_CHILD_CLEARTID | SIGCHLD); a thread's flags.
FORK_FLAGS = 0x01000000 | 0x00200000 | 17
THREAD_FLAGS = 0x003D0F00


@pytest.fixture
def lines() -> list[str]:
    return []


def _gate(tmp_path: Path, lines: list[str], **kw: object) -> Iterator[gate.ExecGate]:
    g = gate.ExecGate(tmp_path / "gate.sock", say=lines.append, **kw)  # type: ignore[arg-type]
    try:
        yield g
    finally:
        g.close()


@pytest.fixture
def enforcing(tmp_path: Path, lines: list[str]) -> Iterator[gate.ExecGate]:
    yield from _gate(tmp_path, lines, manifest="[tool.summon]")


@pytest.fixture
def recording(tmp_path: Path, lines: list[str]) -> Iterator[gate.ExecGate]:
    yield from _gate(tmp_path, lines, record=True)


def test_socket_families(enforcing: gate.ExecGate, recording: gate.ExecGate) -> None:
    for g in (enforcing, recording):
        what, rule = g._judge(NR_SOCKET, "socket", AF_VSOCK) or ("", "")
        assert what == "socket(AF_VSOCK)"
        assert rule == "seccomp: socket mode allows socket families AF_UNIX, AF_INET, AF_INET6 only"
        assert g._judge(NR_SOCKET, "socket", 2**64 - 1) is not None
    assert recording._judge(NR_SOCKET, "socket", AF_INET) is None  # noted and let through


def test_the_kernels_resumption_of_a_stopped_sleep_is_let_through(
    enforcing: gate.ExecGate, recording: gate.ExecGate
) -> None:
    """restart_syscall is the kernel's, after a stop (a gateway's frozen tier) cut a timed
    poll() or sleep short; refused, the thawed app got EPERM from a call it never made."""
    for g in (enforcing, recording):
        assert g._judge(NR_RESTART_SYSCALL, "restart_syscall", 0) is None


def test_a_recording_lets_the_interface_query_through(
    enforcing: gate.ExecGate, recording: gate.ExecGate
) -> None:
    """socket(AF_NETLINK, *, NETLINK_ROUTE) (getifaddrs) is recorded with its calls, so the
    image's profile allows the query; any other netlink protocol is refused while recording."""
    assert recording._judge(NR_SOCKET, "socket", AF_NETLINK, NETLINK_ROUTE) is None
    what, _ = recording._judge(NR_SOCKET, "socket", AF_NETLINK, 15) or ("", "")
    assert what == "socket(AF_NETLINK)"
    # Outside a recording the filter answers the query itself; the gate never passes it.
    assert enforcing._judge(NR_SOCKET, "socket", AF_NETLINK, NETLINK_ROUTE) is not None


def test_direct_mode_says_why_there_is_no_interface_list(tmp_path: Path, lines: list[str]) -> None:
    for g in _gate(tmp_path, lines, network="direct", record=True):
        what, rule = g._judge(NR_SOCKET, "socket", AF_NETLINK, NETLINK_ROUTE) or ("", "")
        assert what == "socket(AF_NETLINK)" and "the app's address is its Stack's" in rule
        assert 'network = "socket"' in rule


def test_direct_mode_has_no_kernel_socket(tmp_path: Path, lines: list[str]) -> None:
    for g in _gate(tmp_path, lines, network="direct", record=True):
        what, rule = g._judge(NR_SOCKET, "socket", AF_INET) or ("", "")
        assert what == "socket()" and "direct mode" in rule


def test_unrecorded_calls_are_refused_with_how_to_allow_them(enforcing: gate.ExecGate) -> None:
    what, rule = enforcing._judge(NR_UNAME, "uname", 0) or ("", "")
    assert what == "uname"
    assert rule.startswith(gate.RULE_UNRECORDED)
    assert 'add syscalls = ["uname"] to [tool.summon]' in rule


def test_an_unrecorded_socket_of_an_allowed_family_is_called_unrecorded(
    enforcing: gate.ExecGate,
) -> None:
    # A WSGI app's first socket() in a handler (a UDP metrics packet, libuuid asking uuidd):
    # the line said socket was "not in the sandbox's allowlist", which allows it (AF_INET).
    what, rule = enforcing._judge(NR_SOCKET, "socket", AF_INET) or ("", "")
    assert what == "socket"
    assert rule.startswith(gate.RULE_UNRECORDED)
    assert 'add syscalls = ["socket"] to [tool.summon]' in rule


def test_a_new_process_is_refused_always_naming_the_rule(
    enforcing: gate.ExecGate, recording: gate.ExecGate
) -> None:
    # os.fork (clone without CLONE_THREAD), subprocess (vfork) and multiprocessing were
    # refused by the kernel alone: the app's PermissionError said nothing, and Flask, which
    # logs a handler's error and answers 500, hid even that. A recording run may not fork.
    for g in (enforcing, recording):
        for nr, name, arg0 in ((NR_CLONE, "clone", FORK_FLAGS), (NR_FORK, "fork", 0),
                               (NR_VFORK, "vfork", 0)):  # fmt: skip
            assert g._judge(nr, name, arg0) == ("fork", gate.RULE_FORK), name
    assert recording._judge(NR_CLONE, "clone", THREAD_FLAGS) is None  # a thread: noted
    assert gate.RULE_FORK == (
        "seccomp: one process, so no fork (subprocess, multiprocessing, a pre-forking "
        "server); use threads or asyncio"
    )


def test_calls_outside_the_allowlist_are_refused_naming_that_rule(
    enforcing: gate.ExecGate,
) -> None:
    """Before, the kernel answered them EPERM and nobody heard of it (inotify, mlock...)."""
    what, rule = enforcing._judge(NR_INOTIFY_INIT1, "inotify_init1", 0) or ("", "")
    assert what == "inotify_init1"
    assert rule.startswith(gate.RULE_OUTSIDE)
    assert 'add syscalls = ["inotify_init1"] to [tool.summon]' in rule


def test_each_refusal_said_once_and_a_flood_is_cut_short(
    enforcing: gate.ExecGate, lines: list[str]
) -> None:
    enforcing._refuse("socket(AF_NETLINK)", "rule")
    enforcing._refuse("socket(AF_NETLINK)", "rule")
    assert lines == ["summon: sandbox: refused socket(AF_NETLINK) (rule)"]
    assert enforcing.refused == {"socket(AF_NETLINK)": 2}
    for n in range(200):
        enforcing._refuse(f"call {n}", "rule")
    assert len(lines) == gate._MAX_LINES + 1
    assert lines[-1].startswith(f"summon: sandbox: over {gate._MAX_LINES} kinds")


def test_family_names() -> None:
    assert gate.family_name(AF_NETLINK) == "AF_NETLINK"
    assert gate.family_name(12345) == "12345"


def test_the_hint_names_the_file_the_manifest_is_in(tmp_path: Path, lines: list[str]) -> None:
    """An app whose manifest is a summon.toml was told to edit [tool.summon]."""
    for g in _gate(tmp_path, lines, manifest="summon.toml"):
        _what, rule = g._judge(NR_UNAME, "uname", 0) or ("", "")
        assert rule.endswith('add syscalls = ["uname"] to summon.toml and rebuild')


def test_a_loop_of_refused_calls_is_paced_naming_the_rule(
    enforcing: gate.ExecGate, lines: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The gate answers in summon's monitor, outside the instance's cgroup: a hostile loop of
    # refused calls must not make it burn a host CPU. Past 1000 a second, it waits the second
    # out (and the app's calls with it).
    waits: list[float] = []
    monkeypatch.setattr(enforcing._stop, "wait", lambda seconds: waits.append(seconds))
    for _ in range(1000):
        enforcing._pace()
    assert waits == [] and enforcing.paced == 0
    enforcing._pace()
    enforcing._pace()
    assert len(waits) == 2 and all(0 < w <= 1.0 for w in waits)
    assert enforcing.paced == 2
    said = [line for line in lines if gate.RULE_PACE in line]
    assert len(said) == 1  # said once
    assert said[0] == f"summon: sandbox: refused a flood of gated calls ({gate.RULE_PACE})"


def test_glibcs_nscd_socket_is_told_apart_from_other_connects() -> None:
    """pwd.getpwuid at request time (pyftpdlib's listing names each file's owner) connects to
    nscd first: the gate answers that ENOENT, as a host without nscd, with no refusal line;
    any other address is judged as ever. The address is read from the caller's memory."""
    import ctypes

    def sockaddr(family: int, path: bytes) -> ctypes.Array[ctypes.c_char]:
        return ctypes.create_string_buffer(family.to_bytes(2, "little") + path, 110)

    me = os.getpid()
    nscd = sockaddr(1, b"/var/run/nscd/socket")
    assert gate._asks_nscd(me, ctypes.addressof(nscd), 110)
    assert gate._asks_nscd(me, ctypes.addressof(sockaddr(1, b"/run/nscd/socket")), 110)
    assert not gate._asks_nscd(me, ctypes.addressof(sockaddr(1, b"/run/app.sock")), 110)
    assert not gate._asks_nscd(me, ctypes.addressof(sockaddr(2, b"/var/run/nscd/socket")), 110)
    assert not gate._asks_nscd(me, ctypes.addressof(nscd), 4096)  # no sockaddr_un is longer
    assert not gate._asks_nscd(me, 0, 110)  # unmapped: EIO, judged as any other connect
    assert not gate._asks_nscd(2**22 + 12345, ctypes.addressof(nscd), 110)  # no such task
