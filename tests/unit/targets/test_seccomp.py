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

    Every rule whose conditions hold is found; the model insists they agree on the action,
    which is what makes it sound whatever libseccomp's precedence (and where the rules of
    one call have different actions, their conditions must never hold together).
    """
    padded = (*args, 0, 0, 0, 0, 0, 0)[:6]
    found = {
        (rule["action"], rule.get("errnoRet", 0))
        for rule in profile["syscalls"]
        if name in rule["names"] and all(_holds(a, padded) for a in rule.get("args", []))
    }
    assert len(found) <= 1, f"{name}{args}: rules disagree: {found}"
    if found:
        return found.pop()
    return profile["defaultAction"], profile["defaultErrnoRet"]


def _holds(cond: dict[str, Any], args: tuple[int, ...]) -> bool:
    value = args[cond["index"]] & (2**64 - 1)  # registers are unsigned 64-bit
    op = cond["op"]
    if op == "SCMP_CMP_MASKED_EQ":
        return bool(value & (cond["value"] & (2**64 - 1)) == cond["valueTwo"])
    if op == "SCMP_CMP_NE":
        return bool(value != cond["value"])
    if op == "SCMP_CMP_EQ":
        return bool(value == cond["value"])
    if op == "SCMP_CMP_GT":
        return bool(value > cond["value"])
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
    for name in MUST_DENY - set(seccomp.PROCESS_CALLS):
        assert decide(profile, name) == ("SCMP_ACT_ERRNO", errno.EPERM), name
    # A new process goes to the gate, which refuses it always, with a line (test_gate.py).
    for name in seccomp.PROCESS_CALLS:
        assert decide(profile, name)[0] == "SCMP_ACT_NOTIFY", name


def test_everyday_calls_allowed(profile: dict[str, Any]) -> None:
    for name in ("read", "write", "openat", "mmap", "futex", "epoll_wait", "getrandom", "exit"):
        assert decide(profile, name)[0] == "SCMP_ACT_ALLOW", name


def test_every_other_call_goes_to_the_gate_to_be_refused_with_a_line(
    profile: dict[str, Any],
) -> None:
    for name in ("setsid", "setuid", "memfd_create", "inotify_init1", "mlock", "getpriority"):
        assert decide(profile, name)[0] == "SCMP_ACT_NOTIFY", name
    # The denied calls the kernel refuses itself (EPERM): the gate's advice to add the call
    # to `syscalls` would be wrong for them (rule seccomp.deny refuses that).
    for name in ("io_uring_enter", "syslog", "quotactl", "fsopen", "modify_ldt"):
        assert decide(profile, name) == ("SCMP_ACT_ERRNO", errno.EPERM), name
    # The default action is left for no call of the table: each is allowed, answered by the
    # kernel (denied, ENOTSUP), or refused by the gate, which says so on the console.
    rules = profile["syscalls"]
    named = {n for rule in rules for n in rule["names"]}
    assert set(seccomp.syscall_numbers()) - named <= set(seccomp.CONDITIONAL)
    # Never the base set: runc's init makes it before the gate holds the notify fd.
    gated = {n for rule in rules if rule["action"] == "SCMP_ACT_NOTIFY" for n in rule["names"]}
    assert not gated & set(seccomp.base_syscalls())


AF = {"AF_UNSPEC": 0, "AF_UNIX": 1, "AF_INET": 2, "AF_AX25": 3, "AF_BRIDGE": 7, "AF_X25": 9,
      "AF_INET6": 10, "AF_ROSE": 11, "AF_NETLINK": 16, "AF_PACKET": 17, "AF_VSOCK": 40}  # fmt: skip


def test_socket_families_in_socket_mode() -> None:
    for mode in ("socket", "none"):
        prof = seccomp.profile(mode, "/s")
        for name in ("AF_UNIX", "AF_INET", "AF_INET6"):
            assert decide(prof, "socket", (AF[name], 1))[0] == "SCMP_ACT_ALLOW", (mode, name)
        # The gate refuses the rest, with a line naming the rule.
        for name in ("AF_UNSPEC", "AF_AX25", "AF_BRIDGE", "AF_X25", "AF_ROSE", "AF_NETLINK",
                     "AF_PACKET", "AF_VSOCK"):  # fmt: skip
            assert decide(prof, "socket", (AF[name], 1, 4))[0] == "SCMP_ACT_NOTIFY", (mode, name)
        assert "socket" not in seccomp.allowed_syscalls(mode)


NETLINK_ROUTE, NETLINK_SOCK_DIAG, NETLINK_KOBJECT_UEVENT = 0, 4, 15
SOCK_RAW_CLOEXEC = 3 | 0o2000000


def test_the_interface_query_is_allowed_where_the_mode_has_kernel_sockets() -> None:
    """getifaddrs (ifaddr, psutil.net_if_addrs, NiceGUI on 0.0.0.0), socket.if_nameindex and
    getaddrinfo's sorting open socket(AF_NETLINK, SOCK_RAW|SOCK_CLOEXEC, NETLINK_ROUTE): a
    read-only view of the instance's own namespace (rtnetlink refuses changes without
    CAP_NET_ADMIN, which the app never has). Every other netlink protocol (the host's device
    events, socket diagnostics) goes to the gate, refused with a line."""
    route = (AF["AF_NETLINK"], SOCK_RAW_CLOEXEC, NETLINK_ROUTE)
    for mode in ("socket", "none"):
        prof = seccomp.profile(mode, "/s")
        assert decide(prof, "socket", route)[0] == "SCMP_ACT_ALLOW", mode
        assert decide(prof, "socket", (AF["AF_NETLINK"], 2, NETLINK_ROUTE))[0] == "SCMP_ACT_ALLOW"
        for protocol in (NETLINK_SOCK_DIAG, NETLINK_KOBJECT_UEVENT, 2**32):
            other = (AF["AF_NETLINK"], SOCK_RAW_CLOEXEC, protocol)
            assert decide(prof, "socket", other)[0] == "SCMP_ACT_NOTIFY", (mode, protocol)
        # The recording hands it to the gate, which lets it through and notes its calls.
        recording = seccomp.profile(mode, "/s", record=True)
        assert decide(recording, "socket", route)[0] == "SCMP_ACT_NOTIFY"
    direct = seccomp.profile("direct", "/s")
    assert decide(direct, "socket", route)[0] == "SCMP_ACT_NOTIFY"


def test_a_derived_profile_allows_the_query_only_with_every_call_it_makes() -> None:
    """A profile whose recording never made the query's calls (a runtime-served app handed
    its listeners makes no bind) answers it EAFNOSUPPORT, quietly, as a kernel without
    netlink: glibc's getaddrinfo does without, where a refused bind would be a line."""
    route = (AF["AF_NETLINK"], SOCK_RAW_CLOEXEC, NETLINK_ROUTE)
    query = seccomp.netlink_route_calls()
    assert query == {"socket", "bind", "getsockname", "sendto", "recvmsg"}
    base = seccomp.derived_allowlist(["openat", "read"])
    for mode in ("socket", "none"):
        full = seccomp.profile(mode, "/s", base | query)
        assert decide(full, "socket", route)[0] == "SCMP_ACT_ALLOW", mode
        for missing in sorted(query):
            prof = seccomp.profile(mode, "/s", (base | query) - {missing})
            assert decide(prof, "socket", route) == ("SCMP_ACT_ERRNO", errno.EAFNOSUPPORT)


@given(st.integers(min_value=0, max_value=2**64 - 1), st.sampled_from([0, 4, 2**32]))
def test_socket_of_any_other_first_argument_goes_to_the_gate(arg: int, protocol: int) -> None:
    """Junk in the high half of AF_INET too: the kernel would drop it, the rule does not."""
    action, _ = decide(seccomp.profile("socket", "/s"), "socket", (arg, 1, protocol))
    if arg in (1, 2, 10):
        want = "SCMP_ACT_ALLOW"
    elif arg == AF["AF_NETLINK"] and protocol == NETLINK_ROUTE:
        want = "SCMP_ACT_ALLOW"
    else:
        want = "SCMP_ACT_NOTIFY"
    assert action == want, (hex(arg), protocol)


def test_no_kernel_socket_in_direct_mode() -> None:
    direct = seccomp.profile("direct", "/s")
    for number in AF.values():
        assert decide(direct, "socket", (number,))[0] == "SCMP_ACT_NOTIFY"
    # asyncio's event loop wakes itself through a socketpair: that must survive.
    assert decide(direct, "socketpair", (AF["AF_UNIX"],))[0] == "SCMP_ACT_ALLOW"
    assert decide(direct, "socketpair", (AF["AF_INET"],)) == ("SCMP_ACT_ERRNO", errno.EPERM)


def test_threads_yes_processes_no(profile: dict[str, Any]) -> None:
    assert decide(profile, "clone", (THREAD_FLAGS,))[0] == "SCMP_ACT_ALLOW"
    assert decide(profile, "clone", (FORK_FLAGS,))[0] == "SCMP_ACT_NOTIFY"  # refused there
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


@pytest.mark.parametrize("record", [False, True])
@given(st.integers(min_value=0, max_value=2**64 - 1), st.integers(min_value=0, max_value=2**64 - 1))
def test_rules_of_one_call_never_disagree(record: bool, arg0: int, arg1: int) -> None:
    """Where one call has rules with different actions, no arguments match two of them."""
    derived = seccomp.derived_allowlist({"clone", "ioctl", "socket", "read"})
    for prof in (
        seccomp.profile("socket", "/s", record=record, seal=True),
        seccomp.profile("socket", "/s", derived),
    ):
        for name in ("clone", "ioctl", "socket", "socketpair", "prctl", "seccomp"):
            decide(prof, name, (arg0, arg1))  # asserts the rules agree


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


# --- derived and recording profiles ------------------------------------------------------------


def test_a_derived_profile_allows_the_list_and_gates_the_rest_of_the_static_one() -> None:
    derived = seccomp.derived_allowlist({"getrandom", "epoll_wait", "socket"})
    prof = seccomp.profile("socket", "/s", derived)
    assert decide(prof, "getrandom")[0] == "SCMP_ACT_ALLOW"
    assert decide(prof, "exit_group")[0] == "SCMP_ACT_ALLOW", "the base set is always in"
    # In the static list but never called: refused by the gate, with a line saying how.
    assert decide(prof, "sendfile")[0] == "SCMP_ACT_NOTIFY"
    # Outside the static list: refused by the gate too (naming that rule); denied: by the kernel.
    assert decide(prof, "setsid")[0] == "SCMP_ACT_NOTIFY"
    assert decide(prof, "ptrace") == ("SCMP_ACT_ERRNO", errno.EPERM)
    # Conditional calls keep their rules: recorded socket is allowed for its families only;
    # ioctl, never recorded here, goes to the gate; a thread is always allowed (a thread
    # pool at a first sync endpoint), a new process never.
    assert decide(prof, "socket", (AF["AF_INET"],))[0] == "SCMP_ACT_ALLOW"
    assert decide(prof, "socket", (AF["AF_VSOCK"],))[0] == "SCMP_ACT_NOTIFY"
    assert decide(prof, "clone", (THREAD_FLAGS,))[0] == "SCMP_ACT_ALLOW"
    assert decide(prof, "clone", (FORK_FLAGS,))[0] == "SCMP_ACT_NOTIFY"  # to be refused
    assert decide(prof, "execve")[0] == "SCMP_ACT_NOTIFY"
    plain = next(r for r in prof["syscalls"] if r["action"] == "SCMP_ACT_ALLOW" and "args" not in r)
    assert sorted(plain["names"]) == seccomp.unconditional(derived, "socket")


def test_the_recording_profile_notifies_the_ceiling_but_the_base_set() -> None:
    prof = seccomp.profile("socket", "/s", ["uname"], record=True)
    for name in seccomp.base_syscalls():
        assert decide(prof, name)[0] == "SCMP_ACT_ALLOW", name
    for name in ("getrandom", "openat", "sendfile", "uname"):
        assert decide(prof, name)[0] == "SCMP_ACT_NOTIFY", name
    # Recording never widens the static list: what is outside it goes to the gate only to be
    # refused and reported (gate.py), and what is denied never reaches it.
    assert decide(prof, "setsid")[0] == "SCMP_ACT_NOTIFY"
    assert "setsid" in seccomp.outside_ceiling(["uname"])
    assert "uname" not in seccomp.outside_ceiling(["uname"])
    assert decide(prof, "ptrace") == ("SCMP_ACT_ERRNO", errno.EPERM)
    assert decide(prof, "listxattr") == ("SCMP_ACT_ERRNO", errno.ENOTSUP)
    assert decide(prof, "clone", (THREAD_FLAGS,))[0] == "SCMP_ACT_NOTIFY"
    assert decide(prof, "clone", (FORK_FLAGS,))[0] == "SCMP_ACT_NOTIFY"  # refused, noted
    assert decide(prof, "ioctl", (1, seccomp.TIOCSTI)) == ("SCMP_ACT_ERRNO", errno.EPERM)
    assert decide(prof, "socket", (AF["AF_INET"],))[0] == "SCMP_ACT_NOTIFY"


@pytest.mark.parametrize("record", [False, True])
def test_the_seal_may_install_its_filter_with_exactly_its_arguments(record: bool) -> None:
    sealing = seccomp.profile("socket", "/s", record=record, seal=True)
    plain = seccomp.profile("socket", "/s", record=record)
    assert decide(sealing, "prctl", (38, 1))[0] == "SCMP_ACT_ALLOW"
    assert decide(sealing, "seccomp", (1, 1))[0] == "SCMP_ACT_ALLOW"  # FILTER, TSYNC
    refused = [
        ("prctl", (38, 0)), ("prctl", (15, 1)), ("prctl", (4, 1)),  # PR_SET_NAME, DUMPABLE
        ("seccomp", (1, 0)), ("seccomp", (1, 8)), ("seccomp", (1, 9)),  # no TSYNC, LISTENER
        ("seccomp", (0, 1)), ("seccomp", (2, 1)),  # STRICT, GET_ACTION_AVAIL
    ]  # fmt: skip
    for name, args in refused:
        assert decide(sealing, name, args) == ("SCMP_ACT_ERRNO", errno.EPERM), (name, args)
    for name, args in [("prctl", (38, 1)), ("seccomp", (1, 1))]:
        assert decide(plain, name, args) == ("SCMP_ACT_ERRNO", errno.EPERM), "no seal, no rule"


def test_seals_reads_app_json() -> None:
    assert seccomp.seals({"seal": {"mode": "on"}})
    assert not seccomp.seals({"seal": {"mode": "audit"}})
    assert not seccomp.seals({"seal": {"mode": "off"}})
    assert not seccomp.seals({})


@pytest.mark.parametrize("network", ["socket", "direct", "none"])
def test_the_base_set_says_why_and_stays_inside_the_static_list(network: str) -> None:
    base = seccomp.base_syscalls(network)
    assert all(base.values())
    assert set(base) <= set(seccomp.allowed_syscalls(network))
    assert not set(base) & (set(seccomp.denied_syscalls()) | set(seccomp.CONDITIONAL))
    # The runtime's figures (and summon.net's counters) renamed into place when asked for.
    assert "rename" in base
    assert "rename" in seccomp.derived_allowlist((), network=network)
    # A gateway's hand-off comes as fds in a message: socket mode only.
    assert ("recvmsg" in base) == (network == "socket")


@pytest.mark.parametrize(
    ("names", "message"),
    [
        (["gettimeofday", "nosuchcall"], "'nosuchcall' is not an x86_64 syscall"),
        (["ptrace"], "'ptrace' is never allowed in the sandbox (rule seccomp.deny: the calls"),
        (["execve"], "'execve' has a fixed rule in the sandbox"),
    ],
)
def test_check_names_says_what_is_wrong_in_one_line(names: list[str], message: str) -> None:
    with pytest.raises(seccomp.SyscallNameError, match=re.escape(message)):
        seccomp.check_names(names)
    assert seccomp.check_names(["uname", "getcwd", "uname"]) == ["getcwd", "uname"]


# Host control and kernel surface a manifest's `syscalls` once could add: the kernel log, the
# x86 segment table, the new mount API (the old mount was denied, these were not), quotas,
# I/O ports, io_uring's other calls, other processes' fds and objects, the host name.
DENIED_SINCE_PROBE = (
    "syslog", "modify_ldt", "fsopen", "fsconfig", "fsmount", "fspick", "open_tree",
    "move_mount", "mount_setattr", "quotactl", "quotactl_fd", "lookup_dcookie", "iopl",
    "ioperm", "uselib", "_sysctl", "io_uring_enter", "io_uring_register", "kcmp",
    "pidfd_getfd", "fanotify_init", "vhangup", "sethostname", "setdomainname",
)  # fmt: skip


@pytest.mark.parametrize("name", DENIED_SINCE_PROBE)
def test_a_manifest_cannot_add_a_denied_call(name: str) -> None:
    # rule seccomp.deny: the calls no sandbox allows, whatever the manifest's `syscalls` say
    with pytest.raises(seccomp.SyscallNameError) as info:
        seccomp.check_names(["getcwd", name])
    message = str(info.value)
    assert message.startswith(f"{name!r} is never allowed in the sandbox (rule seccomp.deny: ")
    assert "\n" not in message
    with pytest.raises(seccomp.SyscallNameError, match=r"\(rule seccomp\.deny: "):
        seccomp.derived_allowlist((), (name,), network="socket")
    with pytest.raises(ValueError, match="a derived allowlist names denied calls"):
        seccomp.profile("socket", "/x.sock", {"read", name})  # a tampered image label
    # vm86 and vm86old are i386 calls: refused as no x86_64 syscall at all
    with pytest.raises(seccomp.SyscallNameError, match="'vm86' is not an x86_64 syscall"):
        seccomp.check_names(["vm86"])


@pytest.mark.skipif(not UNISTD.exists(), reason=f"no {UNISTD}: apt-get install linux-libc-dev")
def test_the_syscall_table_is_the_kernel_headers() -> None:
    from_header = {
        name: int(nr) for name, nr in re.findall(r"#define __NR_(\w+)\s+(\d+)", UNISTD.read_text())
    }
    table = seccomp.syscall_numbers()
    assert {k: table[k] for k in from_header if k in table} == from_header
    assert seccomp.syscall_names()[59] == "execve"


def test_summary_counts_the_unconditional_allows() -> None:
    static = seccomp.summary({"network": "socket", "seal": {"mode": "audit"}}, None)
    assert static["syscalls_allowed"] == len(seccomp.allowed_syscalls("socket")) == 143
    assert (static["derived"], static["seal"]) == (False, "audit")
    derived = seccomp.summary({"network": "socket"}, "read write clone socket")
    assert derived["syscalls"] == ["read", "write"]
    assert derived["conditional"] == ["clone", "socket"]
    assert derived["seal"] == "off"
    sealed = seccomp.summary({"network": "direct", "seal": {"mode": "on"}}, "read socketpair")
    assert sealed["conditional"] == ["clone", "prctl", "seccomp", "socketpair"]


def test_an_image_with_egress_is_allowed_to_connect_out_though_its_build_never_did() -> None:
    # The recording run is hermetic (no egress: a build reaches none of the app's peers), so
    # what connecting out takes is declared for images whose manifest allows egress.
    from summon.targets.sandbox.seccomp import device_syscalls

    assert device_syscalls({}) == {}
    out = device_syscalls({"egress": ["10.0.2.2:5432"]})
    assert {"connect", "getsockopt", "sendmmsg", "socket"} <= set(out)
    assert all(reason for reason in out.values())
    both = device_syscalls({"egress": ["db:5432"], "stores": {"todo": "/data/todo"}})
    assert {"connect", "fdatasync", "flock"} <= set(both)


def test_an_image_whose_wheels_stat_through_old_glibc_wrappers_may_call_legacy_stat() -> None:
    """duckdb's read_csv answered 'No files found': its wheel (manylinux2014) stats files
    through __xstat, which glibc 2.36 answers with the legacy stat syscall the sandbox
    refused. An image one of whose ELF files imports such a wrapper is allowed the call."""
    from summon.targets.sandbox.seccomp import (
        allowed_syscalls,
        device_syscalls,
        symbols_with_calls,
    )

    assert {"__xstat", "__lxstat"} <= symbols_with_calls()
    assert device_syscalls({}, (), ()) == {}
    out = device_syscalls({}, (), {"__xstat", "__lxstat64", "memcpy"})
    assert set(out) == {"stat", "lstat"} and all(out.values())
    # The static list (images without a recorded one) holds them too.
    assert {"stat", "lstat"} <= set(allowed_syscalls("socket"))


def test_an_image_whose_code_asks_a_threads_priority_may_read_it() -> None:
    """A gRPC server (grpcio's cygrpc: abseil's Mutex) printed 'RAW: pthread_getschedparam
    failed: 1' at every request: glibc asks sched_getparam and sched_getscheduler, which
    the build's recording run (no RPC) never made. An image whose ELF files import
    pthread_getschedparam is allowed both; one without keeps them refused."""
    from summon.targets.sandbox.seccomp import (
        allowed_syscalls,
        device_syscalls,
        symbols_with_calls,
    )

    assert "pthread_getschedparam" in symbols_with_calls()
    out = device_syscalls({}, (), {"pthread_getschedparam", "pthread_create"})
    assert set(out) == {"sched_getparam", "sched_getscheduler"} and all(out.values())
    assert not {"sched_getparam", "sched_getscheduler"} & set(device_syscalls({}, (), {"memcpy"}))
    assert {"sched_getparam", "sched_getscheduler"} <= set(allowed_syscalls("socket"))


def test_an_image_with_socketserver_may_select_between_requests() -> None:
    """fakeredis's TcpFakeServer (a socketserver handler per connection) waits with
    select.select between commands, which the build's one request never reached: every
    client got 'ResponseError: 1', the console 'refused pselect6'. An image holding
    socketserver is allowed it; one without (examples/http, at most 70 calls) is not."""
    from summon.targets.sandbox.seccomp import device_syscalls

    assert set(device_syscalls({}, ["socketserver"])) == {"pselect6"}
    assert "pselect6" not in device_syscalls({}, ["asyncio", "selectors"])


def test_an_image_with_shutil_may_copy_files_though_its_build_request_never_did() -> None:
    # shutil.copy2 and copytree answered EPERM in a handler: one request at build time
    # rarely copies a file. An image holding shutil is allowed what its copies take.
    from summon.targets.sandbox.seccomp import device_syscalls

    copies = {"sendfile", "chmod", "fchmod", "fchmodat", "utimensat", "statfs"}
    assert not copies & set(device_syscalls({}, {"json", "asyncio"}))
    out = device_syscalls({}, {"json", "shutil"})
    assert copies == set(out) and all(out.values())
    # multiprocessing's pipes are let through, so that what is refused is the fork itself.
    # Not subprocess's: every image holds subprocess (os.popen imports it), and examples/http
    # stays within its count.
    # Its locks' semaphores are linked into /dev/shm: a Pool in a handler was refused `link`
    # with a line saying to allow it, rather than the fork.
    assert set(device_syscalls({}, {"multiprocessing"})) == {"pipe2", "link"}
    assert device_syscalls({}, {"subprocess"}) == {}
    # A mapped file's flush in a handler answered EPERM too, and so did a lock library's lock
    # file taken at request time: the build's one request takes none. Not fcntl's own: every
    # image holds fcntl (subprocess imports it), and examples/http stays within its count.
    assert set(device_syscalls({}, {"mmap"})) == {"msync"}
    # Django's FileSystemStorage locks each file it saves: every FileField upload was a 500.
    for lock in ("filelock", "portalocker", "fasteners", "django.core.files.locks"):
        assert set(device_syscalls({}, {lock})) == {"flock", "fcntl"}
    assert device_syscalls({}, {"fcntl"}) == {}
    for network in ("socket", "direct", "none"):
        static = set(seccomp.allowed_syscalls(network))
        declared = set(
            device_syscalls(
                {}, {"shutil", "multiprocessing", "mmap", "filelock", "email.utils", "platform"}
            )
        )
        assert declared <= static
        assert not declared & (set(seccomp.denied_syscalls()) | set(seccomp.CONDITIONAL))


def test_a_handler_may_name_its_host_though_its_build_request_never_did() -> None:
    # make_msgid (every mail a handler sends: Django's send_mail) and smtplib's EHLO ask
    # socket.getfqdn, platform.node asks uname: refused when the build's one request had not
    # named the host. Only images with those modules: examples/http stays within its count.
    from summon.targets.sandbox.seccomp import device_syscalls

    assert "uname" not in seccomp.base_syscalls()
    assert "uname" not in device_syscalls({}, {"json", "asyncio", "socket"})
    assert set(device_syscalls({}, {"email.utils"})) == {"uname"}
    assert set(device_syscalls({}, {"platform"})) == {"uname"}


def test_a_recorded_call_lets_its_siblings_through_within_the_static_list() -> None:
    """Python's os.stat is newfstatat; a Rust library imported on a later request stats with
    statx. Seen one, the image allows its siblings, never beyond the static allowlist."""
    derived = seccomp.derived_allowlist(["newfstatat", "sendto"], network="socket")
    assert {"statx", "fstat"} <= derived
    assert "renameat2" not in derived  # no sibling of it was seen
    static = set(seccomp.allowed_syscalls("socket"))
    assert derived - set(seccomp.base_syscalls("socket")) <= static
    known = set(seccomp.syscall_numbers())
    for group in seccomp.SIBLINGS:
        assert set(group) <= known, group


def test_numa_memory_policy_is_answered_enosys_quietly_unless_the_manifest_allows_it() -> None:
    """OpenBLAS (numpy) calls mbind at start and does without: a kernel without NUMA's
    answer, from the filter itself, so no gate line at every start and no build warning."""
    prof = seccomp.profile("socket", "/run/x.sock")
    answered = {name: rule.get("errnoRet") for rule in prof["syscalls"] for name in rule["names"]}
    for name in ("mbind", "set_mempolicy", "get_mempolicy"):
        assert answered[name] == errno.ENOSYS
        assert name not in seccomp.outside_ceiling()  # the recording run does not report it
    allowed = seccomp.derived_allowlist([], ["mbind"], "socket")
    opted = seccomp.profile("socket", "/run/x.sock", allowed)
    assert any(r["action"] == seccomp.ALLOW and "mbind" in r["names"] for r in opted["syscalls"])
    assert not any(r.get("errnoRet") == errno.ENOSYS and "mbind" in r["names"]
                   for r in opted["syscalls"])  # fmt: skip


def test_jemallocs_raw_open_is_allowed_once_recorded() -> None:
    """granian's embedded server printed `refused open` at every start, and its build said to
    add syscalls = ["open"]: jemalloc reads /proc/sys/vm/overcommit_memory with a raw
    open(2), openat's older name, which glibc never calls."""
    assert "open" not in seccomp.outside_ceiling()  # the recording run notes it, silently
    derived = seccomp.derived_allowlist(["open", "read"], network="socket")
    prof = seccomp.profile("socket", "/run/x.sock", derived)
    assert decide(prof, "open")[0] == "SCMP_ACT_ALLOW"
    assert "open" not in seccomp.base_syscalls("socket")  # only images that call it
