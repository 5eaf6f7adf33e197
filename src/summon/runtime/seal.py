"""Sealing a running image: once the app is up, no new code and no new executable memory.

The seal closes at one moment of an instance's life (docs/sealing.md says which, per entry
kind): when the app calls summon.runtime.ready() (and only then, when the build saw the app's
code call it: app.json "seal"/"at" is "ready"); else when its Stack device first listens,
before a script's first line, or before an entry function that asks for no Stack is called.
Before it closes, the runtime
1. calls the probe (app.json "probe"), when there is one, so that code libraries build
   lazily is built now (init.warm_up does it, before the app starts);
2. loads every shared object the image ships that is not loaded yet (app.json
   "seal"/"preload"), so that no import after the seal has to map new code;
3. resolves what its own shutdown calls (a VM's reboot through ctypes);
4. installs a seccomp filter of its own (the BPF program below), with the thread sync flag
   so that every thread has it: mmap, mprotect and pkey_mprotect with PROT_EXEC, shmat with
   SHM_EXEC, personality(READ_IMPLIES_EXEC), memfd_create, execve/execveat, ptrace, and the
   calls that put code into the kernel or reach its memory (modules, kexec, bpf, port I/O,
   device nodes, mounts: a VM's root could mount /proc read-write again) answer EPERM;
5. makes sys.path's relative entries absolute (absolute_path_entries) and installs the
   audit hook (seal_hook.py): no code compiled from strings, imports only from the image,
   no ctypes, writes only under /tmp and the app's volumes.

Mode "audit" does 1-3 and 5, with a hook that says what it would refuse and refuses nothing,
and installs no filter (the kernel's log of a filter is host-wide and says nothing on the
app's console). Each refusal is said once (within a quota per rule, seal_said.py), on stderr:
"summon: sealed: refused WHAT (RULE)".

Image-side: stdlib only. ctypes is imported when the seal closes, not before (~3 ms).
"""

from __future__ import annotations

import os
import sys

# Not from typing: importing typing costs ~9 ms at every start.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from typing import Any

    from summon.runtime.config import AppConfig

MODES = ("on", "audit", "off")

# <linux/audit.h>, <asm/unistd_64.h>, <linux/mman.h>, <linux/shm.h>, <linux/personality.h>
AUDIT_ARCH_X86_64 = 0xC000003E
X32_SYSCALL_BIT = 0x40000000
PROT_EXEC = 0x4
SHM_EXEC = 0o100000
READ_IMPLIES_EXEC = 0x0400000
SECCOMP_RET_KILL_PROCESS = 0x80000000
SECCOMP_RET_ERRNO = 0x00050000
SECCOMP_RET_ALLOW = 0x7FFF0000
EPERM = 1
SYS_SECCOMP = 317
SECCOMP_SET_MODE_FILTER = 1
SECCOMP_FILTER_FLAG_TSYNC = 1
PR_SET_NO_NEW_PRIVS = 38

# The build's recording run learns the code an app compiles after the seal (seal_hook.py).
LEARN_ENV = "SUMMON_SEAL_LEARN"
LEARNED_PREFIX = "sealed: learned code "
LEARNED_EARLY_PREFIX = "sealed: learned early code "  # compiled before the seal (seal_early)
MAX_LEARNED = 1000  # an app that makes that much code as it runs makes new code every time

RULE_MEMORY = "seal.memory: no new executable memory after the seal"
RULE_PROGRAM = "seal.program: no second program"
RULE_KERNEL = "seal.kernel: no new code in the kernel"

# (number, name, argument index, bit): refused when the argument has the bit; index None:
# refused whatever the arguments. x86_64 numbers.
FILTER_RULES: tuple[tuple[int, str, int | None, int, str], ...] = (
    (9, "mmap", 2, PROT_EXEC, RULE_MEMORY),
    (10, "mprotect", 2, PROT_EXEC, RULE_MEMORY),
    (329, "pkey_mprotect", 2, PROT_EXEC, RULE_MEMORY),
    (30, "shmat", 2, SHM_EXEC, RULE_MEMORY),
    # READ_IMPLIES_EXEC makes every later readable mapping executable.
    (135, "personality", 0, READ_IMPLIES_EXEC, RULE_MEMORY),
    # A memfd is a file nobody else sees: written, then mapped or executed.
    (319, "memfd_create", None, 0, RULE_MEMORY),
    (59, "execve", None, 0, RULE_PROGRAM),
    (322, "execveat", None, 0, RULE_PROGRAM),
    # A traced child could poke code into its parent; /proc/PID/mem is the hook's to refuse.
    (101, "ptrace", None, 0, RULE_PROGRAM),
    (175, "init_module", None, 0, RULE_KERNEL),
    (313, "finit_module", None, 0, RULE_KERNEL),
    (246, "kexec_load", None, 0, RULE_KERNEL),
    (320, "kexec_file_load", None, 0, RULE_KERNEL),
    (321, "bpf", None, 0, RULE_KERNEL),
    (172, "iopl", None, 0, RULE_KERNEL),
    (173, "ioperm", None, 0, RULE_KERNEL),
    # A VM's init is root: a new device node could open the kernel's memory or ports.
    (133, "mknod", None, 0, RULE_KERNEL),
    (259, "mknodat", None, 0, RULE_KERNEL),
    # ... and /proc mounted again read-write (or a new one) would open /proc/self/mem, whose
    # writes reach code pages. umount2 stays: a VM's shutdown unmounts its volumes.
    (165, "mount", None, 0, RULE_KERNEL),
    (155, "pivot_root", None, 0, RULE_KERNEL),
    (428, "open_tree", None, 0, RULE_KERNEL),
    (429, "move_mount", None, 0, RULE_KERNEL),
    (430, "fsopen", None, 0, RULE_KERNEL),
    (431, "fsconfig", None, 0, RULE_KERNEL),
    (432, "fsmount", None, 0, RULE_KERNEL),
    (433, "fspick", None, 0, RULE_KERNEL),
    (442, "mount_setattr", None, 0, RULE_KERNEL),
)

# struct seccomp_data: nr at 0, arch at 4, instruction_pointer at 8, args[6] from 16 (u64
# each; the low 32 bits first on little-endian x86_64).
OFFSET_NR = 0
OFFSET_ARCH = 4
OFFSET_ARGS = 16

# Classic BPF opcodes (<linux/filter.h>).
BPF_LD_W_ABS = 0x00 | 0x00 | 0x20  # BPF_LD | BPF_W | BPF_ABS
BPF_JEQ_K = 0x05 | 0x10 | 0x00  # BPF_JMP | BPF_JEQ | BPF_K
BPF_JGE_K = 0x05 | 0x30 | 0x00  # BPF_JMP | BPF_JGE | BPF_K
BPF_JSET_K = 0x05 | 0x40 | 0x00  # BPF_JMP | BPF_JSET | BPF_K
BPF_RET_K = 0x06 | 0x00  # BPF_RET | BPF_K

# One instruction before assembly: (opcode, k, jump-if-true label, jump-if-false label);
# labels are None (the next instruction) or names placed with ("label", name).
Instruction = tuple[int, int, "str | None", "str | None"]


def filter_program() -> list[tuple[int, int, int, int]]:
    """The seal's filter as (code, jt, jf, k) instructions, assembled.

    Architecture first: a call from another ABI kills the process (the sandbox's own filter
    already does; in a VM this one is the only one). x32 calls (bit 30 in the number) are
    refused. Then one comparison per refused call, and a check of one argument's bit where
    only some calls are refused.
    """
    body: list[Instruction | tuple[str, str]] = [
        (BPF_LD_W_ABS, OFFSET_ARCH, None, None),
        (BPF_JEQ_K, AUDIT_ARCH_X86_64, None, "kill"),
        (BPF_LD_W_ABS, OFFSET_NR, None, None),
        (BPF_JGE_K, X32_SYSCALL_BIT, "deny", None),
    ]
    checks: dict[tuple[int, int], str] = {}
    for nr, _name, index, bit, _rule in FILTER_RULES:
        if index is None:
            body.append((BPF_JEQ_K, nr, "deny", None))
        else:
            label = checks.setdefault((index, bit), f"arg{index}&{bit:#x}")
            body.append((BPF_JEQ_K, nr, label, None))
    body.append((BPF_RET_K, SECCOMP_RET_ALLOW, None, None))
    for (index, bit), label in checks.items():
        body += [
            ("label", label),
            # The low half of the argument: every bit tested here lives there.
            (BPF_LD_W_ABS, OFFSET_ARGS + 8 * index, None, None),
            (BPF_JSET_K, bit, "deny", None),
            (BPF_RET_K, SECCOMP_RET_ALLOW, None, None),
        ]
    body += [
        ("label", "deny"),
        (BPF_RET_K, SECCOMP_RET_ERRNO | EPERM, None, None),
        ("label", "kill"),
        (BPF_RET_K, SECCOMP_RET_KILL_PROCESS, None, None),
    ]
    return assemble(body)


def assemble(body: list[Instruction | tuple[str, str]]) -> list[tuple[int, int, int, int]]:
    """Resolve labels into classic BPF's relative forward jumps: (code, jt, jf, k)."""
    labels: dict[str, int] = {}
    code: list[Instruction] = []
    for item in body:
        if item[0] == "label":
            labels[str(item[1])] = len(code)
        else:
            code.append(item)  # type: ignore[arg-type]
    out = []
    for i, (op, k, jt, jf) in enumerate(code):
        offsets = []
        for label in (jt, jf):
            target = i + 1 if label is None else labels[label]
            offset = target - (i + 1)
            if not 0 <= offset <= 255:
                raise ValueError(f"BPF jump from {i} to {label} is out of reach ({offset})")
            offsets.append(offset)
        out.append((op, offsets[0], offsets[1], k))
    return out


def program_bytes(program: list[tuple[int, int, int, int]]) -> bytes:
    """struct sock_filter[]: u16 code, u8 jt, u8 jf, u32 k, each."""
    import struct  # already loaded by ctypes by the time this runs

    return b"".join(struct.pack("=HBBI", *ins) for ins in program)


def install_filter(program: list[tuple[int, int, int, int]]) -> None:
    """Install the program for every thread of the process; OSError if the kernel refuses."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    # No new privileges is set already in the sandbox (runc); a VM's init must set it (or be
    # root, which it is) before an unprivileged filter is allowed.
    libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    raw = program_bytes(program)

    class SockFprog(ctypes.Structure):
        _fields_ = (("len", ctypes.c_ushort), ("filter", ctypes.c_char_p))

    prog = SockFprog(len(program), raw)
    libc.syscall.restype = ctypes.c_long
    result = libc.syscall(
        ctypes.c_long(SYS_SECCOMP),
        ctypes.c_long(SECCOMP_SET_MODE_FILTER),
        ctypes.c_long(SECCOMP_FILTER_FLAG_TSYNC),
        ctypes.byref(prog),
    )
    if result != 0:
        err = ctypes.get_errno() if result < 0 else 0
        if result > 0:  # TSYNC: the id of a thread whose filters differ
            raise OSError(0, f"thread {result} has filters of its own")
        raise OSError(err, os.strerror(err))


class Sealer:
    """Closes the seal of this instance once (seal()), the way app.json "seal" says."""

    def __init__(
        self,
        cfg: AppConfig,
        roots: tuple[str, ...],
        say: Callable[[str], None],
    ) -> None:
        self.mode = cfg.seal
        self.preload = tuple(cfg.preload)
        self.writable = (
            "/tmp",
            "/dev/shm",  # multiprocessing's shared memory and its semaphores' files
            *(v.rstrip("/") for v in cfg.volumes if v.startswith("/")),
        )
        # Module folders under a writable one are not the image's, whatever sys.path says.
        self.roots = tuple(
            r for r in roots if r.startswith("/") and r != "/" and not _under(r, self.writable)
        )
        self.say = say
        # The app's code calls ready() (the build saw it): only that closes the seal.
        self.waits_for_ready = cfg.seal_at == "ready"
        self.known_code = frozenset(cfg.seal_code)
        # The build's recording run (build/syscalls.py) sets it: code from strings is let
        # through and said, for the build to put in app.json "seal"/"code". Never from the
        # image's own environment (app.json "env", set before this runs).
        self.learning = os.environ.get(LEARN_ENV) == "1" and LEARN_ENV not in cfg.env
        self._learned_said: set[tuple[str, str]] = set()
        self._early_count = 0  # pieces of code compiled before the seal, told (seal_early)
        self._code_hinted = False  # the seal.code refusal said how to avoid it once
        self.runtime_ctypes: list[Any] = []  # ctypes as the runtime loaded it (activate())
        self.sealed = False
        self.exit_status = [1]  # what the instance exits with (exiting()): seal_end.py
        self.why = ""
        self.seconds = 0.0  # how long closing the seal took

    def reached(self, point: str) -> None:
        """One of the runtime's own seal points: close the seal unless the app's ready() will."""
        if not self.waits_for_ready:
            self.seal(point)

    def seal(self, why: str) -> None:
        """Close the seal now (a no-op after the first time)."""
        if self.sealed:
            return
        self.sealed = True
        self.why = why
        import atexit
        import time

        started = time.monotonic()
        from summon.runtime import prepare, seal_end, seal_hook
        from summon.runtime.seal_said import Said

        prepare.prepare(self.say)  # what libraries would compile on first use, made now

        enforce = self.mode == "on"
        had_ctypes = "ctypes" in sys.modules
        mapped, _ = _read_maps()
        self._preload(mapped)
        shutdown, kept = _resolve_shutdown()
        if enforce:
            try:
                install_filter(filter_program())
            except (OSError, AttributeError) as e:
                self.say(
                    f"sealed without its seccomp filter (the kernel said: {e}); the audit hook "
                    "still holds"
                )
            from summon.runtime import seal_ctypes

            undone = seal_ctypes.disarm(self._refusal, self.runtime_ctypes, kept)
            if undone is not None:
                self.say(f"sealed: ctypes' types are left as they are ({undone})")
        patch_memory_calls(self._refusal, enforce)
        absolute_path_entries(sys.path)
        said = Said()
        atexit.register(self._untold, said)
        hook = seal_hook.make_hook(
            roots=self.roots,
            writable=self.writable,
            enforce=enforce,
            trusted_callers=shutdown,
            report=self._refusal,
            known_code=self.known_code,
            dataclasses=_dataclasses(),
            learn=self._learned if self.learning else None,
            said=said,
        )
        # ctypes the seal imported for itself leaves sys.modules (a later import is refused);
        # its modules and the runtime's are emptied, or memmove, cast... stay reachable from
        # object.__subclasses__() (CDLL). _ctypes is seal_ctypes.disarm's.
        for module in self.runtime_ctypes + (forget_ctypes() if not had_ctypes else []):
            if module.__name__ != "_ctypes":
                vars(module).clear()
        sys.addaudithook(hook)
        if enforce:
            sys.addaudithook(seal_end.exit_hook(self.exit_status))
        _, writable_code = _read_maps()
        if writable_code:
            self.say(
                f"sealed: warning: {writable_code} writable and executable mapping(s) existed "
                "before the seal; the seal cannot take them back"
            )
        self.seconds = time.monotonic() - started
        if self.learning:
            self.say(
                f"sealed at {why}, learning ({LEARN_ENV}): code from strings is let through "
                "and said, for the build to let through from now on"
            )
        if not enforce:
            self.say(f"sealed (audit) at {why}: what the seal would refuse is said, not refused")
        elif os.environ.get("SUMMON_LOG_LEVEL") == "debug":
            self.say(f"sealed at {why} in {self.seconds * 1000:.1f} ms")

    def learn_early(self) -> None:
        """The build's learning run: learn what the app compiles before the seal, too
        (seal_early.py); a run that is not learning installs nothing."""
        if self.learning:
            from summon.runtime import seal_early

            seal_early.install(self._learned_early, lambda: self.sealed)

    def _learned_early(self, digest: str, name: str) -> None:
        """Code compiled before the seal (told once each by seal_early), within a bound of
        its own: an app's start never uses up what the code after the seal may learn."""
        if self._early_count < MAX_LEARNED:
            self._early_count += 1
            self.say(f"{LEARNED_EARLY_PREFIX}{digest} {name!r}")

    def _learned(self, digest: str, name: str) -> None:
        """In the build's recording run: a compile (or an exec, digest "") seal.code would
        have refused, said in the form build/syscalls.py reads (LEARNED_PREFIX)."""
        if (digest, name) in self._learned_said or len(self._learned_said) > MAX_LEARNED:
            return
        self._learned_said.add((digest, name))
        if len(self._learned_said) > MAX_LEARNED:
            self.say(
                f"sealed: over {MAX_LEARNED} pieces of code from strings after the seal; no more "
                "are learned (an app that makes new code as it serves cannot be sealed: "
                'seal = "audit" shows what it makes)'
            )
            return
        self.say(f"{LEARNED_PREFIX}{digest or '-'} {name!r}")

    def _untold(self, said: Any) -> None:
        """At the instance's end: how many refusals went unsaid past their rule's quota."""
        line = said.summary()
        if line is not None:
            self.say(line)

    def _refusal(self, what: str, rule: str, enforce: bool) -> None:
        from summon.runtime.seal_said import written_code_hint  # imported by the seal

        written = written_code_hint(what, self.writable) if enforce else None
        if written is not None and rule.startswith("seal.code:"):
            self.say(f"sealed: refused {what} ({rule}); {written}")
        elif enforce and rule.startswith("seal.code:") and not self._code_hinted:
            # Code made at a first use the build's recording run never reached (Bottle's
            # template("<b>{{name}}</b>") in a route): say once how to have it made before.
            self._code_hinted = True
            self.say(
                f"sealed: refused {what} ({rule}); the build's recording run (/ and the pages "
                "it leads to) never saw this code made: have it made before the seal (warm_up "
                '= ["/its/path"] for an app the runtime serves, else a probe = "module:function" '
                'that uses it); code made of what a request brings needs seal = "audit"'
            )
        elif enforce:
            self.say(f"sealed: refused {what} ({rule})")
        else:
            self.say(f"sealed (audit): would refuse {what} ({rule})")

    def _preload(self, mapped: set[str]) -> None:
        """Load every shared object the image ships, so no later import maps new code."""
        todo = [p for p in self.preload if p not in mapped and os.path.exists(p)]
        if not todo:
            return
        import ctypes

        # The interpreter's own flags (RTLD_NOW): a later import's dlopen of the same path
        # finds the object loaded and maps nothing.
        mode = sys.getdlopenflags()
        for path in todo:
            try:
                ctypes.CDLL(path, mode=mode)
            except OSError as e:
                self.say(f"sealed: could not load {path} before the seal ({e})")

    def watch_sockets(self) -> None:
        """Close the seal at the script's first bind(), connect() (but to its own loopback),
        sendto() or sendmsg() of an internet socket (seal_net.py): its imports, its app's
        construction and its templates' setup happen first, unsealed, as a function entry's
        module import does."""
        from summon.runtime import seal_net

        sealer = self
        seal_net.watch(lambda: sealer.sealed, sealer.reached)

    def watch_stack(self, stack: Any) -> Any:
        """Make the Stack device close the seal once it listens (TCP server or UDP port)."""
        for name in ("start_server", "open_udp"):
            original = getattr(stack, name, None)
            if original is not None:
                setattr(stack, name, self._sealing(original, f"{name}()"))
        return stack

    def _sealing(
        self, original: Callable[..., Awaitable[Any]], why: str
    ) -> Callable[..., Awaitable[Any]]:
        async def listen_then_seal(*args: Any, **kwargs: Any) -> Any:
            result = await original(*args, **kwargs)
            self.reached(why)
            return result

        return listen_then_seal


_active: Sealer | None = None


def activate(sealer: Sealer | None) -> None:
    """Make sealer the one ready() closes (the runtime calls this once, before the app).
    The runtime's ctypes (a VM's init mounts with it) leaves sys.modules now: an app gets its
    own, and the seal empties the runtime's, whose memmove a sealed VM's app wrote with."""
    global _active
    _active = sealer
    if sealer is not None and sealer.mode == "on":
        sealer.runtime_ctypes = forget_ctypes()


def ready() -> None:
    """The app's warm-up is done: close the seal now (a no-op outside a sealing image)."""
    if _active is not None:
        _active.seal("ready()")


def exiting(status: int) -> None:
    """The runtime is done with the app: the status the instance exits with (seal_end.py)."""
    if _active is not None:
        _active.exit_status[0] = status


def absolute_path_entries(path: list[Any]) -> None:
    """Make sys.path's relative entries absolute, against the working folder now, in place.

    A relative entry is the folder the path finder finds modules in at each import: the app's
    (/app) now, /tmp after an os.chdir. Servers started from a script put one there before
    the seal (uvicorn's --app-dir "", python -m's ""), and the hook, which must not trust a
    folder that can change, refused every import after the seal with it (anyio's backend at
    a FastAPI app's first request). Made absolute here, it names the folder it names now,
    which the hook judges as any other; a relative entry added after the seal is refused.
    """
    try:
        cwd = os.getcwd()
    except OSError:
        return  # no working folder: the path finder skips relative entries too
    for i, entry in enumerate(path):
        if isinstance(entry, str) and not entry.startswith("/"):
            path[i] = os.path.normpath(os.path.join(cwd, entry))


def _dataclasses() -> Any:
    """dataclasses, imported now if the image holds it: the seal lets a module imported later
    make dataclasses only with this module's functions as they are now (seal_hook.py)."""
    try:
        import dataclasses
    except ImportError:
        return None
    return dataclasses


def _under(path: str, folders: tuple[str, ...]) -> bool:
    return any(path == f or path.startswith(f + "/") for f in folders)


def forget_ctypes() -> list[Any]:
    """Take ctypes out of sys.modules; return its modules. Its names are read from a copy made
    at once: another thread may import meanwhile (asyncio's getaddrinfo thread imports
    encodings.idna), and a seal iterating sys.modules itself died of "dictionary changed size
    during iteration"."""
    gone = []
    for name in list(sys.modules):
        if name == "_ctypes" or name.partition(".")[0] == "ctypes":
            gone.append(sys.modules.pop(name, None))
    return [m for m in gone if m is not None]


def _read_maps() -> tuple[set[str], int]:
    """(files mapped into this process, how many mappings are writable and executable)."""
    files: set[str] = set()
    writable_code = 0
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                parts = line.split(None, 5)
                if len(parts) < 5:
                    continue
                if parts[1].startswith("rwx"):
                    writable_code += 1
                if len(parts) == 6 and parts[5].startswith("/"):
                    files.add(parts[5].rstrip("\n"))
    except OSError:
        pass
    return files, writable_code


def _resolve_shutdown() -> tuple[frozenset[object], list[Any]]:
    """Resolve what the runtime's own shutdown calls; return the code allowed to call it, and
    the function pointers it calls (the only ones still callable after the seal: seal_ctypes).

    A VM's init powers off through ctypes (umount, reboot): its functions are looked up now,
    and vm.finish's code stays allowed to call them after the seal (it does nothing else).
    What else its libc resolved for the setup (syscall, mount) is dropped: Python 3.11 audits
    no call of a function pointer, and syscall(process_vm_writev) writes any memory.
    """
    vm = sys.modules.get("summon.runtime.vm")
    if vm is None or not getattr(vm, "active", False):
        return frozenset(), []
    libc = vm._libc_call()
    for name in [n for n in vars(libc) if not n.startswith("_")]:
        if name not in ("umount", "reboot"):  # syscall, mount: its setup's, done
            delattr(libc, name)
    return frozenset({vm.finish.__code__}), [libc.umount, libc.reboot]


def patch_memory_calls(report: Callable[[str, str, bool], None], enforce: bool) -> None:
    """Say (and refuse) executable memory asked for through the stdlib, before the kernel does.

    The kernel's answer to the filter is a bare EPERM that nobody in the process hears about;
    the two stdlib roads to it (mmap.mmap with PROT_EXEC, os.memfd_create) are checked here
    first so that the console says which rule. Only a courtesy: the filter holds without it.
    """
    said: set[str] = set()

    def refuse(what: str) -> None:
        if what not in said:
            said.add(what)
            report(what, RULE_MEMORY, enforce)
        if enforce:
            raise PermissionError(1, f"{what} refused by the seal ({RULE_MEMORY})")

    mmap = sys.modules.get("mmap")
    if mmap is not None:
        base = mmap.mmap
        default_prot = mmap.PROT_READ | mmap.PROT_WRITE

        exec_bit = mmap.PROT_EXEC

        class mmap_sealed(base):  # type: ignore[valid-type,misc]
            def __new__(cls, *args: Any, **kwargs: Any) -> Any:
                prot = kwargs.get("prot", args[3] if len(args) > 3 else default_prot)
                if isinstance(prot, int) and prot & exec_bit:
                    refuse("mmap.mmap(prot=PROT_EXEC)")
                return base.__new__(cls, *args, **kwargs)

        mmap_sealed.__name__ = mmap_sealed.__qualname__ = "mmap"
        mmap_sealed.__module__ = "mmap"
        mmap.mmap = mmap_sealed  # type: ignore[attr-defined]
    memfd_create = getattr(os, "memfd_create", None)
    if memfd_create is not None:

        def memfd_create_sealed(name: str, flags: int = os.MFD_CLOEXEC) -> int:
            refuse("os.memfd_create()")
            return int(memfd_create(name, flags))

        os.memfd_create = memfd_create_sealed
