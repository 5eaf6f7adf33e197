"""The sandbox's seccomp profiles (OCI linux.seccomp): static, derived from a recording, recording.

The data lives in seccomp-allowlist.json beside this module, as reviewable data: the static
allowlist, the base set every derived profile keeps, the denied calls with reasons, the socket
families, and the x86_64 syscall table. The few rules that look at arguments are written out
below. Everything not allowed gets EPERM: the denied calls from the kernel, every other call
from the gate (gate.py), which says once which call and what would allow it.

Three kinds of profile (`profile()`):
- static: the allowlist of the JSON file, for images that carry no recorded list;
- derived: the base set plus what the image's recording run called plus the manifest's
  `syscalls`; the calls of the static list the image never made are handed to the gate
  (gate.py), which refuses them with one line naming the rule, so a call the recording run
  did not reach is easy to see and to add;
- recording: every call of the ceiling (the static list and the manifest's extras) but the
  base set is handed to the gate, which notes it and lets it through; see record.py.

execve cannot simply be denied: runc installs the filter inside its own init process and then
execs the app through it, so a denied execve would stop the app from ever starting. Instead
execve is handed to summon through a seccomp user notification: the gate lets exactly one
through (runc's exec of the app, before any app code exists) and answers EPERM to every later
one. If summon goes away the kernel answers ENOSYS, so the gate fails closed.
"""

from __future__ import annotations

import errno
import json
from collections.abc import Collection, Iterable
from functools import cache
from pathlib import Path
from typing import Any

from summon.errors import UserError

NETWORK_MODES = ("socket", "direct", "none")

# clone flags (linux/sched.h). A thread is a clone with CLONE_THREAD and no new namespace;
# fork() in glibc is clone(SIGCHLD | ...) without CLONE_THREAD.
CLONE_THREAD = 0x00010000
_CLONE_NEW_ANY = (
    0x00020000  # CLONE_NEWNS
    | 0x02000000  # CLONE_NEWCGROUP
    | 0x04000000  # CLONE_NEWUTS
    | 0x08000000  # CLONE_NEWIPC
    | 0x10000000  # CLONE_NEWUSER
    | 0x20000000  # CLONE_NEWPID
    | 0x40000000  # CLONE_NEWNET
)
# TIOCSTI pushes bytes into a terminal's input queue. The app's stdio may be the caller's
# terminal, so it could type commands into the host shell. The kernel already refuses it on a
# terminal that is not the caller's controlling one (runc makes the app a session leader with
# none); this rule does not rely on that.
TIOCSTI = 0x5412
# What the runtime's seal (summon.runtime.seal) calls to install its own filter: exactly these
# arguments, so an app cannot ask for a listener of its own or drop the thread sync.
PR_SET_NO_NEW_PRIVS = 38
SECCOMP_SET_MODE_FILTER = 1
SECCOMP_FILTER_FLAG_TSYNC = 1

# Syscalls with argument rules or non-default answers; they must not appear in the plain lists.
# Denied calls the gate refuses with a line rather than the kernel silently: a new process.
PROCESS_CALLS = ("fork", "vfork")
CONDITIONAL = ("clone", "clone3", "execve", "ioctl", "socket", "socketpair", "prctl", "seccomp")
# Conditional calls a recording can notice, and a derived list may therefore name.
RECORDABLE_CONDITIONAL = ("clone", "ioctl", "socket", "socketpair")

ALLOW = "SCMP_ACT_ALLOW"
EQ = "SCMP_CMP_EQ"
_AF_UNIX = 1
NOTIFY = "SCMP_ACT_NOTIFY"
ERRNO = "SCMP_ACT_ERRNO"
SHUTDOWN, SHUT_WR = "shutdown", 1

_DATA = "seccomp-allowlist.json"
# The rule that refuses a denied call in a manifest's `syscalls`, named in the refusal.
RULE_DENIED = "rule seccomp.deny: the calls no sandbox allows"
# Where `summon inspect --json` and the bill of materials put an image's sandbox policy.
REPORT_KEY = "sandbox"


class SyscallNameError(ValueError):
    """A syscall name that is not an x86_64 syscall, or one the sandbox never allows."""


@cache
def _data() -> dict[str, Any]:
    # Beside this module, read by path: importlib.resources would import zipfile and its
    # readers (~5 ms) in every sandbox start for one file that is never in a zip here.
    text = Path(__file__).with_name(_DATA).read_text(encoding="utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


def _check_network(network: str) -> None:
    if network not in NETWORK_MODES:
        raise ValueError(f"unknown network mode {network!r}; expected one of {NETWORK_MODES}")


def allowed_syscalls(network: str) -> list[str]:
    """The static allowlist: every syscall allowed unconditionally in this mode, sorted.

    The same in every mode: socket() and socketpair() are conditional (family rules).
    """
    _check_network(network)
    data = _data()
    return sorted({name for group in data["allow"].values() for name in group["syscalls"]})


def denied_syscalls() -> dict[str, str]:
    """The syscalls denied on purpose, each with the reason."""
    denied: dict[str, str] = _data()["deny"]["syscalls"]
    return dict(denied)


def unsupported_syscalls() -> list[str]:
    """The calls answered with an errno of their own without reaching the kernel (ENOTSUP, as
    on a filesystem without the feature: extended attributes, fallocate; ENOSYS, as a kernel
    without NUMA: memory policy), so that the stdlib, libc and libraries take their fallback."""
    return sorted(quiet_errnos())


def quiet_errnos() -> dict[str, int]:
    """Each call unsupported_syscalls() names -> the errno it is answered."""
    answers: dict[str, int] = {}
    for section in ("unsupported", "absent"):
        data = _data()[section]
        answers.update(dict.fromkeys(data["syscalls"], getattr(errno, data["errno"])))
    return answers


def base_syscalls(network: str = "socket") -> dict[str, str]:
    """The base set every derived profile of this mode allows, each with the reason.

    The runtime's own calls that a recording run may not reach: runc's after the filter is
    installed, the shutdown's, and the network mode's device's periodic ones; and the
    everyday calls of a request handler (the "handler" group), which one request at build
    time cannot be trusted to make.
    """
    _check_network(network)
    data = _data()["base"]
    return {
        **data["syscalls"],
        **data["handler"]["syscalls"],
        **data["by-network"].get(network, {}),
    }


def device_syscalls(
    app_config: dict[str, Any], modules: Collection[str] = (), symbols: Collection[str] = ()
) -> dict[str, str]:
    """The calls the devices an image uses always make, each with the reason: allowed in its
    derived profile whether or not the recording run reached them (a KV_RW store's batch
    flush, its packing, happen long after a start). Today: the KV_RW store's, for an image
    with stores (app.json "stores"), and the outbound connections of an image with egress,
    which the recording run never makes (a build reaches no app's peers). And the calls of
    stdlib modules the image holds (`modules`), which a handler reaches on paths the build's
    one request does not: shutil's copies (their bytes, mode and times), multiprocessing's
    pipes (so that what the sandbox refuses is the fork itself). Not subprocess's: every
    image holds subprocess (os.popen imports it), and its Popen fails on the pipe anyway.
    And the calls of symbols its ELF files import (`symbols`, build/elf.undefined_symbols):
    a wheel built against an older glibc stats files through the legacy stat syscalls."""
    base = _data()["base"]
    by_device: dict[str, dict[str, str]] = base["by-device"]
    calls: dict[str, str] = {}
    if app_config.get("stores"):
        calls.update(by_device["KV_RW"])
    if app_config.get("egress"):
        calls.update(by_device["egress"])
    by_module: dict[str, dict[str, str]] = base["by-module"]
    for module in sorted(set(by_module) & set(modules)):
        calls.update(by_module[module])
    by_symbol: dict[str, dict[str, str]] = base["by-symbol"]["symbols"]
    for symbol in sorted(set(by_symbol) & set(symbols)):
        calls.update(by_symbol[symbol])
    return calls


def symbols_with_calls() -> frozenset[str]:
    """The symbols an image's ELF files may import that device_syscalls answers: glibc's
    pre-2.33 stat wrappers, which reach the legacy stat syscalls."""
    return frozenset(_data()["base"]["by-symbol"]["symbols"])


def socket_families(network: str) -> dict[str, int]:
    """The address families socket() may open in this mode: name -> number."""
    _check_network(network)
    if network == "direct":
        return {}
    families: dict[str, int] = _data()["socket-families"]["families"]
    return dict(families)


@cache
def syscall_numbers() -> dict[str, int]:
    """Every x86_64 syscall: name -> number."""
    numbers: dict[str, int] = _data()["x86_64"]["numbers"]
    return dict(numbers)


@cache
def syscall_names() -> dict[int, str]:
    """Every x86_64 syscall: number -> name."""
    return {nr: name for name, nr in syscall_numbers().items()}


def check_names(names: Iterable[str]) -> list[str]:
    """The names sorted, or SyscallNameError naming the first that is not allowable."""
    known = syscall_numbers()
    denied = denied_syscalls()
    for name in names:
        if name not in known:
            raise SyscallNameError(f"{name!r} is not an x86_64 syscall")
        if name in denied:
            raise SyscallNameError(
                f"{name!r} is never allowed in the sandbox ({RULE_DENIED}): {denied[name]}"
            )
        if name in ("clone3", "execve", "prctl", "seccomp"):
            raise SyscallNameError(
                f"{name!r} has a fixed rule in the sandbox (see docs/sandbox.md); leave it out"
            )
    return sorted(set(names))


def check_label(image: str, names: Collection[str] | None) -> None:
    """UserError if an image's recorded allowlist (its SYSCALLS_LABEL) names a call no
    sandbox allows: no build records one, so the config was made or changed by hand."""
    denied = denied_syscalls()
    bad = sorted(set(names or ()) & set(denied))
    if bad:
        raise UserError(
            f"image {image} is refused: its config's syscall list (label dev.summon.syscalls) "
            f"names {bad[0]!r}, which the sandbox never allows ({RULE_DENIED}: {denied[bad[0]]});"
            " no build records it: a tampered or foreign image"
        )


def ceiling(extra: Collection[str] = ()) -> frozenset[str]:
    """What a recording may notice: the static allowlist, its conditional calls, `extra`."""
    return frozenset(allowed_syscalls("socket")) | set(RECORDABLE_CONDITIONAL) | set(extra)


def outside_ceiling(extra: Collection[str] = (), network: str = "socket") -> frozenset[str]:
    """The calls a recording run hands the gate only to refuse (EPERM, as every instance
    would) and report: every x86_64 call but the ceiling, the denied ones, those with fixed
    rules, the ones answered ENOTSUP and the base set. So a build names what the app called
    that the sandbox will refuse (an instance refuses it too, through the gate, with a line)."""
    known = set(syscall_numbers())
    out = known - ceiling(extra) - set(denied_syscalls()) - set(CONDITIONAL)
    return frozenset(out - set(unsupported_syscalls()) - set(base_syscalls(network)))


# Calls that do one thing under several names, where libc, Python and Rust's std pick
# differently: Python's os.stat is newfstatat, Rust's std::fs::metadata statx (cryptography's
# Rust code, imported by a handler after the recording run, stats with it). A recording that
# saw one lets its siblings through too, within the static allowlist: the same reach, no false
# refusal. Kept to what is seen in practice: each sibling widens every image's profile.
SIBLINGS = (("fstat", "newfstatat", "statx"),)


def derived_allowlist(
    recorded: Iterable[str], extra: Iterable[str] = (), network: str = "socket"
) -> frozenset[str]:
    """An image's allowed set: the base set, what its recording noticed with its siblings
    in the static allowlist (SIBLINGS), the manifest's extra."""
    base = frozenset(base_syscalls(network))
    seen = frozenset(recorded)
    static = frozenset(allowed_syscalls(network))
    siblings = {name for group in SIBLINGS if seen & set(group) for name in group} & static
    return base | seen | siblings | frozenset(check_names(extra))


def unconditional(allowed: Collection[str] | None, network: str) -> list[str]:
    """The calls a profile allows whatever their arguments (the count docs/sandbox.md gives)."""
    if allowed is None:
        return allowed_syscalls(network)
    return sorted(set(allowed) - set(CONDITIONAL))


def profile(
    network: str,
    listener_path: str,
    allowed: Collection[str] | None = None,
    *,
    record: bool = False,
    seal: bool = False,
    host_listeners: bool = False,
) -> dict[str, Any]:
    """The OCI `linux.seccomp` object for an app in this network mode.

    allowed: the image's derived allowlist (derived_allowlist()), or None for the static one.
    record: the recording profile (allowed then names the manifest's extra calls, if any).
    seal: the image's runtime installs a filter of its own once the app is up (allow it).
    host_listeners: the app is handed listening sockets of the host (shutdown_rules).
    listener_path is the unix socket the gate listens on; runc hands it the notify fd.
    """
    _check_network(network)
    static = allowed_syscalls(network)
    denied = denied_syscalls()
    overlap = (set(static) & set(denied)) | (set(static) & set(CONDITIONAL))
    overlap |= set(base_syscalls(network)) & (set(denied) | set(CONDITIONAL))
    overlap |= set(unsupported_syscalls()) & (set(static) | set(denied) | set(CONDITIONAL))
    if overlap:
        # A data edit that lets a denied call in must fail loudly, never widen the sandbox.
        raise ValueError(f"seccomp allowlist overlaps denied/conditional calls: {sorted(overlap)}")
    if allowed is not None and set(allowed) & set(denied):
        raise ValueError(
            f"a derived allowlist names denied calls: {sorted(set(allowed) & set(denied))}"
        )

    if record:
        top = ceiling(allowed or ())
        base = set(base_syscalls(network))
        plain = sorted(base)
        gated = sorted(top - base - set(CONDITIONAL))
        permitted = set(RECORDABLE_CONDITIONAL)
    elif allowed is None:
        plain = static
        gated = []
        permitted = set(RECORDABLE_CONDITIONAL)
    else:
        plain = unconditional(allowed, network)
        gated = sorted(set(static) - set(plain))
        # A thread (clone with CLONE_THREAD, no new namespace: the rule below) is everyday
        # work that one build request need not make: a thread pool at the first sync
        # endpoint (anyio's), an executor. Never a new process.
        permitted = (set(allowed) & set(RECORDABLE_CONDITIONAL)) | {"clone"}

    def action(name: str) -> str:
        """ALLOW a conditional call's permitted cases, or let the gate see them."""
        return ALLOW if name in permitted and not record else NOTIFY

    guarded = host_listeners and not record and SHUTDOWN in (*plain, *gated)
    if guarded:
        plain = [n for n in plain if n != SHUTDOWN]
        gated = [n for n in gated if n != SHUTDOWN]

    eperm = {"action": ERRNO, "errnoRet": errno.EPERM}
    rules: list[dict[str, Any]] = [{"names": plain, "action": ALLOW}]
    if gated:
        rules.append({"names": gated, "action": NOTIFY})
    rules += [
        {
            "names": ["clone"],
            "action": action("clone"),
            "args": [
                {
                    "index": 0,
                    "value": CLONE_THREAD | _CLONE_NEW_ANY,
                    "valueTwo": CLONE_THREAD,
                    "op": "SCMP_CMP_MASKED_EQ",
                }
            ],
        },
        # A new process (fork: clone without CLONE_THREAD; vfork, as subprocess makes one):
        # the gate refuses it, always, with a line naming the rule (the app's PermissionError
        # alone says nothing, and a framework that logs it and answers 500 hides even that).
        {
            "names": ["clone"],
            "action": NOTIFY,
            "args": [
                {"index": 0, "value": CLONE_THREAD, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}
            ],
        },
        {"names": sorted(PROCESS_CALLS), "action": NOTIFY},
        # clone3 passes its flags in memory, out of the filter's sight. ENOSYS makes glibc
        # fall back to clone, where the rules above see them.
        {"names": ["clone3"], "action": ERRNO, "errnoRet": errno.ENOSYS},
        {"names": ["execve"], "action": NOTIFY},
        *_ioctl_rules(action("ioctl")),
        *_socket_rules(network, action("socket"), _route_action(allowed, record)),
        {
            "names": ["socketpair"],
            "action": action("socketpair"),
            "args": [
                {"index": 0, "value": socket_families("socket")["AF_UNIX"], "op": "SCMP_CMP_EQ"}
            ],
        },
    ]
    if guarded:
        rules += shutdown_rules()
    if record:
        # Outside the ceiling: refused by the gate as by the default action, but noted.
        rules.append({"names": sorted(outside_ceiling(allowed or (), network)), "action": NOTIFY})
    if seal:
        rules += _seal_rules()
    # What the manifest's syscalls allow outright is not also answered ENOTSUP.
    quiet = {n: e for n, e in quiet_errnos().items() if n not in plain and n not in gated}
    for answer in sorted(set(quiet.values())):
        names = sorted(n for n, e in quiet.items() if e == answer)
        rules.append({"names": names, "action": ERRNO, "errnoRet": answer})
    rules.append({"names": sorted(set(denied) - set(PROCESS_CALLS)), **eperm})
    if not record:
        # Every other call of the table: refused by the gate, with a line naming it and
        # what to add (an app's EPERM alone says nothing); the kernel answers the denied
        # calls above itself. Never the base set: runc's init makes it before the gate
        # holds the notify fd; nor the calls of fixed rules (prctl, seccomp without a seal),
        # which no manifest can allow. (runc 1.1 takes no NOTIFY default action: names.)
        named = {n for rule in rules for n in rule["names"]}
        named |= set(base_syscalls(network)) | set(CONDITIONAL)
        rest = sorted(set(syscall_numbers()) - named)
        if rest:
            rules.append({"names": rest, "action": NOTIFY})
    return {
        "defaultAction": ERRNO,
        "defaultErrnoRet": errno.EPERM,
        # Only native x86_64: libseccomp then refuses i386 (int 0x80) and x32 calls outright,
        # which would otherwise reach syscalls under numbers this filter never names.
        "architectures": ["SCMP_ARCH_X86_64"],
        "listenerPath": listener_path,
        "syscalls": rules,
    }


def shutdown_rules() -> list[dict[str, Any]]:
    """shutdown() for writing only (SHUT_WR: a half-close, what the runtime's server does),
    for an app handed the host's listening sockets; the gate refuses the rest with a line.

    A listener is one socket for every holder: shutdown(SHUT_RD) of the app's copy stopped
    it for the gateway too and gave its port back, and the socket, still of the host's
    network namespace, could then be listened on at a random port of its address (0.0.0.0
    for `-p 8080:80`) or, with bind in the profile (getaddrinfo's netlink query records
    it), bound to any free address and port of the host."""
    arg = {"index": 1, "value": SHUT_WR}
    return [
        {"names": [SHUTDOWN], "action": ALLOW, "args": [{**arg, "op": EQ}]},
        {"names": [SHUTDOWN], "action": NOTIFY, "args": [{**arg, "op": "SCMP_CMP_NE"}]},
    ]


def _ioctl_rules(action: str) -> list[dict[str, Any]]:
    """Allow ioctl for every request whose low 32 bits differ from TIOCSTI's.

    Each rule allows the requests that differ from TIOCSTI in one bit, so together they allow
    all others. Simpler spellings fail: libseccomp lets an unconditional allow, or an allow on
    `!= TIOCSTI`, win over a masked deny, and `!= TIOCSTI` alone lets TIOCSTI with junk in the
    high half through (the kernel drops those bits). The integration tests try both spellings.
    """
    return [
        {
            "names": ["ioctl"],
            "action": action,
            "args": [
                {
                    "index": 1,
                    "value": 1 << bit,
                    "valueTwo": ~TIOCSTI & (1 << bit),
                    "op": "SCMP_CMP_MASKED_EQ",
                }
            ],
        }
        for bit in range(32)
    ]


# socket()'s first argument outside {AF_UNIX 1, AF_INET 2, AF_INET6 10, AF_NETLINK 16}, as
# comparisons on the whole 64-bit register: 0, 3, 4-7, 8-9, 11, 12-15 and everything above 16
# (negative ints included, as the kernel's int is sign-extended into a huge unsigned value).
_OTHER_FAMILIES = (
    {"index": 0, "value": 0, "op": "SCMP_CMP_EQ"},
    {"index": 0, "value": 3, "op": "SCMP_CMP_EQ"},
    {"index": 0, "value": 0xFFFF_FFFF_FFFF_FFFC, "valueTwo": 4, "op": "SCMP_CMP_MASKED_EQ"},
    {"index": 0, "value": 0xFFFF_FFFF_FFFF_FFFE, "valueTwo": 8, "op": "SCMP_CMP_MASKED_EQ"},
    {"index": 0, "value": 11, "op": "SCMP_CMP_EQ"},
    {"index": 0, "value": 0xFFFF_FFFF_FFFF_FFFC, "valueTwo": 12, "op": "SCMP_CMP_MASKED_EQ"},
    {"index": 0, "value": 16, "op": "SCMP_CMP_GT"},
)
AF_NETLINK = 16
NETLINK_ROUTE = 0


def netlink_route_errno() -> int:
    """What socket(AF_NETLINK, *, NETLINK_ROUTE) is answered in socket and none mode when the
    image's profile cannot finish glibc's interface query (netlink_route_calls())."""
    return int(getattr(errno, _data()["socket-families"]["netlink-route"]["errno"]))


def netlink_route_calls() -> frozenset[str]:
    """The calls glibc's interface query makes on its NETLINK_ROUTE socket (getifaddrs,
    if_nameindex, getaddrinfo's sorting): socket, bind, getsockname, sendto, recvmsg."""
    return frozenset(_data()["socket-families"]["netlink-route"]["calls"])


def _route_action(allowed: Collection[str] | None, record: bool) -> str:
    """socket(AF_NETLINK, *, NETLINK_ROUTE): a read-only socket on the instance's own network
    namespace. Rtnetlink answers its dumps (links, addresses, routes) to anyone and refuses
    every change without CAP_NET_ADMIN over the namespace, which the app never has (summon
    made the namespace, owned by the host's user namespace; the app's sets are empty);
    its multicast groups (events of that namespace) may be joined, never sent to. Allowed
    where the mode has kernel sockets and the profile finishes the query; otherwise the
    quiet errno, as from a kernel without netlink. A recording lets it through the gate, so
    an app that asks at start gets the query's calls recorded."""
    if record:
        return NOTIFY
    if allowed is None or netlink_route_calls() <= set(allowed):
        return ALLOW
    return ERRNO


def _socket_rules(network: str, action: str, route: str) -> list[dict[str, Any]]:
    """socket() of the mode's families (action), every other family to the gate, refused.

    The gate answers the others EPERM with a line naming the rule; a whole-register compare
    also refuses AF_INET with junk in the high half, which the kernel would drop. AF_NETLINK
    is the gate's too, but for NETLINK_ROUTE (route: _route_action), whose whole-register
    protocol compare lets no other protocol pass as it.
    """
    families = socket_families(network)
    if not families:
        # Direct mode: the kernel's interfaces are not the app's (summon.net's stack has its
        # own address behind the TAP device), so the gate refuses netlink with the rest.
        return [{"names": ["socket"], "action": NOTIFY}]
    if set(families.values()) != {1, 2, 10}:
        raise ValueError(f"socket family rules are written for AF_UNIX/INET/INET6: {families}")
    rules: list[dict[str, Any]] = [
        {
            "names": ["socket"],
            "action": action,
            "args": [{"index": 0, "value": nr, "op": "SCMP_CMP_EQ"}],
        }
        for nr in sorted(families.values())
    ]
    rules += [{"names": ["socket"], "action": NOTIFY, "args": [dict(c)]} for c in _OTHER_FAMILIES]
    netlink = {"index": 0, "value": AF_NETLINK, "op": "SCMP_CMP_EQ"}
    query: dict[str, Any] = {"names": ["socket"], "action": route}
    if route == ERRNO:
        query["errnoRet"] = netlink_route_errno()
    query["args"] = [netlink, {"index": 2, "value": NETLINK_ROUTE, "op": "SCMP_CMP_EQ"}]
    rules += [
        query,
        {
            "names": ["socket"],
            "action": NOTIFY,
            "args": [netlink, {"index": 2, "value": NETLINK_ROUTE, "op": "SCMP_CMP_NE"}],
        },
    ]
    return rules


def _seal_rules() -> list[dict[str, Any]]:
    """What the runtime's seal calls: prctl(PR_SET_NO_NEW_PRIVS, 1), seccomp(FILTER, TSYNC)."""
    return [
        {
            "names": ["prctl"],
            "action": ALLOW,
            "args": [
                {"index": 0, "value": PR_SET_NO_NEW_PRIVS, "op": "SCMP_CMP_EQ"},
                {"index": 1, "value": 1, "op": "SCMP_CMP_EQ"},
            ],
        },
        {
            "names": ["seccomp"],
            "action": ALLOW,
            "args": [
                {"index": 0, "value": SECCOMP_SET_MODE_FILTER, "op": "SCMP_CMP_EQ"},
                {"index": 1, "value": SECCOMP_FILTER_FLAG_TSYNC, "op": "SCMP_CMP_EQ"},
            ],
        },
    ]


def seals(app_config: dict[str, Any]) -> bool:
    """Whether the image's runtime seals itself (app.json "seal" mode "on"): allow it to."""
    seal = app_config.get("seal")
    return isinstance(seal, dict) and seal.get("mode") == "on"


def summary(app_config: dict[str, Any], label: str | None) -> dict[str, Any]:
    """What `summon inspect --json` says under REPORT_KEY for an image.

    label: the image's dev.summon.syscalls label (its derived list), None for the static one.
    """
    network = str(app_config.get("network", "socket"))
    if network not in NETWORK_MODES:
        network = "socket"
    allowed = frozenset(label.split()) if label is not None else None
    plain = unconditional(allowed, network)
    conditional = set(allowed if allowed is not None else RECORDABLE_CONDITIONAL) | {"clone"}
    if network == "direct":
        conditional.discard("socket")
    if seals(app_config):
        conditional |= {"prctl", "seccomp"}
    seal = app_config.get("seal")
    return {
        "network": network,
        "derived": allowed is not None,
        "syscalls_allowed": len(plain),
        "syscalls": plain,
        "conditional": sorted(conditional & set(CONDITIONAL)),
        "seal": seal.get("mode", "off") if isinstance(seal, dict) else "off",
    }
