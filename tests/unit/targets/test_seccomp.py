"""The sandbox's seccomp profile: shape, allowlist hygiene, and what its argument rules decide."""

from __future__ import annotations

import errno
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from summon.targets.sandbox import seccomp

UNISTD = Path("/usr/include/x86_64-linux-gnu/asm/unistd_64.h")
# What the brief names as explicitly denied; the profile may deny more.
MUST_DENY = {
    "execveat", "fork", "vfork", "ptrace", "mount", "umount2", "pivot_root", "chroot",
    "init_module", "finit_module", "delete_module", "kexec_load", "kexec_file_load", "bpf",
    "perf_event_open", "unshare", "setns", "keyctl", "add_key", "reboot", "swapon", "acct",
    "userfaultfd", "process_vm_readv", "process_vm_writev",
}  # fmt: skip
# glibc 2.36 pthread_create's clone flags, and fork()'s.
THREAD_FLAGS = 0x3D0F00
FORK_FLAGS = 0x01200011  # CLONE_CHILD_SETTID | CLONE_CHILD_CLEARTID | SIGCHLD
CLONE_NEWNET = 0x40000000


def decide(profile: dict[str, Any], name: str, args: tuple[int, ...] = ()) -> tuple[str, int]:
    """What the filter answers: (action, errno). A small model of libseccomp for our rules.

    Sound for this profile because no two rules that can match the same call have different
    actions (test_no_conflicting_rules checks that).
    """
    padded = (*args, 0, 0, 0, 0, 0, 0)[:6]
    for rule in profile["syscalls"]:
        if name in rule["names"] and all(_holds(a, padded) for a in rule.get("args", [])):
            return rule["action"], rule.get("errnoRet", 0)
    return profile["defaultAction"], profile["defaultErrnoRet"]


def _holds(cond: dict[str, Any], args: tuple[int, ...]) -> bool:
    value = args[cond["index"]]
    op = cond["op"]
    if op == "SCMP_CMP_MASKED_EQ":
        return bool(value & cond["value"] == cond["valueTwo"])
    if op == "SCMP_CMP_NE":
        return bool(value != cond["value"])
    if op == "SCMP_CMP_EQ":
        return bool(value == cond["value"])
    raise AssertionError(f"model lacks {op}")


@pytest.fixture(params=["socket", "none", "direct"])
def profile(request: pytest.FixtureRequest) -> dict[str, Any]:
    return seccomp.profile(request.param, "/run/x.sock")


def test_default_is_eperm_and_only_native_x86_64(profile: dict[str, Any]) -> None:
    assert profile["defaultAction"] == "SCMP_ACT_ERRNO"
    assert profile["defaultErrnoRet"] == errno.EPERM
    # Listing X86 or X32 would let int 0x80 / x32 calls be judged by name; leaving them out
    # makes libseccomp refuse those calling conventions outright.
    assert profile["architectures"] == ["SCMP_ARCH_X86_64"]
    assert profile["listenerPath"] == "/run/x.sock"


def test_required_denials_are_denied(profile: dict[str, Any]) -> None:
    assert MUST_DENY <= set(seccomp.denied_syscalls())
    for name in MUST_DENY:
        assert decide(profile, name) == ("SCMP_ACT_ERRNO", errno.EPERM), name


def test_everyday_calls_allowed(profile: dict[str, Any]) -> None:
    for name in ("read", "write", "openat", "mmap", "futex", "epoll_wait", "getrandom", "exit"):
        assert decide(profile, name)[0] == "SCMP_ACT_ALLOW", name


def test_unknown_calls_fall_to_eperm(profile: dict[str, Any]) -> None:
    for name in ("setsid", "setuid", "io_uring_enter", "memfd_create", "syslog", "quotactl"):
        assert decide(profile, name) == ("SCMP_ACT_ERRNO", errno.EPERM), name


def test_socket_denied_only_in_direct_mode() -> None:
    for mode in ("socket", "none"):
        assert decide(seccomp.profile(mode, "/s"), "socket")[0] == "SCMP_ACT_ALLOW"
    direct = seccomp.profile("direct", "/s")
    assert decide(direct, "socket") == ("SCMP_ACT_ERRNO", errno.EPERM)
    # asyncio's event loop wakes itself through a socketpair: that must survive.
    assert decide(direct, "socketpair")[0] == "SCMP_ACT_ALLOW"
    assert "socket" not in seccomp.allowed_syscalls("direct")


def test_threads_yes_processes_no(profile: dict[str, Any]) -> None:
    assert decide(profile, "clone", (THREAD_FLAGS,))[0] == "SCMP_ACT_ALLOW"
    assert decide(profile, "clone", (FORK_FLAGS,)) == ("SCMP_ACT_ERRNO", errno.EPERM)
    # A "thread" that also asks for a namespace is refused too.
    assert decide(profile, "clone", (THREAD_FLAGS | CLONE_NEWNET,))[0] == "SCMP_ACT_ERRNO"
    assert decide(profile, "clone3") == ("SCMP_ACT_ERRNO", errno.ENOSYS)


def test_execve_goes_to_the_gate(profile: dict[str, Any]) -> None:
    assert decide(profile, "execve")[0] == "SCMP_ACT_NOTIFY"


@given(st.integers(min_value=0, max_value=2**32 - 1))
def test_ioctl_refuses_tiocsti_whatever_its_upper_bits(high: int) -> None:
    """The kernel's ioctl takes an unsigned int: any upper 32 bits still spell TIOCSTI."""
    request = high << 32 | seccomp.TIOCSTI
    action, err = decide(seccomp.profile("socket", "/s"), "ioctl", (0, request))
    assert (action, err) == ("SCMP_ACT_ERRNO", errno.EPERM), hex(request)


@given(st.integers(min_value=0, max_value=2**64 - 1).filter(lambda r: r & 0xFFFFFFFF != 0x5412))
def test_ioctl_allows_every_other_request(request: int) -> None:
    action, _err = decide(seccomp.profile("socket", "/s"), "ioctl", (0, request))
    assert action == "SCMP_ACT_ALLOW", hex(request)


def test_ioctl_common_requests() -> None:
    prof = seccomp.profile("socket", "/s")
    for request in (0x5401, 0x5413, 0x541B, 0x5421, seccomp.TIOCSTI - 1, seccomp.TIOCSTI + 1):
        assert decide(prof, "ioctl", (1, request))[0] == "SCMP_ACT_ALLOW", hex(request)
    assert decide(prof, "ioctl", (1, 0x7_0000_5412))[0] == "SCMP_ACT_ERRNO"


def test_no_conflicting_rules(profile: dict[str, Any]) -> None:
    """Each syscall's rules share one action, so libseccomp's precedence never matters."""
    actions: dict[str, set[str]] = {}
    for rule in profile["syscalls"]:
        for name in rule["names"]:
            actions.setdefault(name, set()).add(rule["action"])
    assert {n: a for n, a in actions.items() if len(a) > 1} == {}


@pytest.mark.skipif(not UNISTD.exists(), reason=f"no {UNISTD}: apt-get install linux-libc-dev")
def test_every_name_is_a_real_x86_64_syscall() -> None:
    """runc skips names it cannot resolve with only a warning: a typo would silently deny."""
    known = set(re.findall(r"#define __NR_(\w+)\s+\d+", UNISTD.read_text()))
    names = set(seccomp.allowed_syscalls("socket")) | set(seccomp.denied_syscalls())
    names |= set(seccomp.CONDITIONAL)
    assert names - known == set()


def test_overlap_in_the_data_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    data = seccomp._data()
    bad = {**data, "allow": {**data["allow"], "oops": {"why": "", "syscalls": ["ptrace"]}}}
    monkeypatch.setattr(seccomp, "_data", lambda: bad)
    with pytest.raises(ValueError, match="ptrace"):
        seccomp.profile("socket", "/s")


def test_unknown_network_mode() -> None:
    with pytest.raises(ValueError, match="network mode"):
        seccomp.profile("tap", "/s")


def test_every_group_says_why() -> None:
    data = seccomp._data()
    for name, group in data["allow"].items():
        assert group["why"] and group["syscalls"], name
    assert all(seccomp.denied_syscalls().values())
