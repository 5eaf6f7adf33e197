"""The seal's seccomp filter: its assembler, its verdicts (by a BPF interpreter), the kernel's.

decide() runs the assembled program the way the kernel does, over a seccomp_data built
from a syscall number, an architecture and six arguments, so each rule's verdict is checked
on the bytes the kernel will run, not on the table they came from. One test installs the
program for real in a child process (no_new_privs makes that allowed without root).
"""

from __future__ import annotations

import struct
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from summon.runtime import seal

SRC = Path(__file__).resolve().parents[3] / "src"
ALLOW = seal.SECCOMP_RET_ALLOW
DENY = seal.SECCOMP_RET_ERRNO | seal.EPERM
KILL = seal.SECCOMP_RET_KILL_PROCESS
AUDIT_ARCH_I386 = 0x40000003
NR = {name: nr for nr, name, *_ in seal.FILTER_RULES}


def decide(program: list[tuple[int, int, int, int]], nr: int, args: tuple[int, ...] = (),
           arch: int = seal.AUDIT_ARCH_X86_64) -> int:  # fmt: skip
    """Run classic BPF over struct seccomp_data, as the kernel does; return the verdict."""
    padded = [a & (2**64 - 1) for a in (*args, 0, 0, 0, 0, 0, 0)[:6]]
    data = struct.pack("=iIQ6Q", nr, arch, 0, *padded)
    acc = 0
    pc = 0
    for _ in range(len(program) + 1):  # forward jumps only: each instruction at most once
        code, jt, jf, k = program[pc]
        if code == seal.BPF_LD_W_ABS:
            (acc,) = struct.unpack_from("=I", data, k)
            pc += 1
        elif code == seal.BPF_RET_K:
            return k
        elif code in (seal.BPF_JEQ_K, seal.BPF_JGE_K, seal.BPF_JSET_K):
            taken = {
                seal.BPF_JEQ_K: acc == k,
                seal.BPF_JGE_K: acc >= k,
                seal.BPF_JSET_K: bool(acc & k),
            }[code]
            pc += 1 + (jt if taken else jf)
        else:
            raise AssertionError(f"the interpreter lacks opcode {code:#x}")
    raise AssertionError("the program ran off its end")


PROGRAM = seal.filter_program()


def reference(nr: int, args: tuple[int, ...]) -> int:
    """The verdict FILTER_RULES describes, written without BPF."""
    padded = (*args, 0, 0, 0, 0, 0, 0)[:6]
    if nr >= seal.X32_SYSCALL_BIT:
        return DENY
    for number, _name, index, bit, _rule in seal.FILTER_RULES:
        if number == nr:
            if index is None or padded[index] & 0xFFFF_FFFF & bit:
                return DENY
            return ALLOW
    return ALLOW


@pytest.mark.parametrize(
    ("name", "args", "verdict"),
    [
        ("mmap", (0, 4096, 3), ALLOW),  # PROT_READ | PROT_WRITE
        ("mmap", (0, 4096, 7), DENY),  # ... | PROT_EXEC
        ("mmap", (0, 4096, 5), DENY),  # PROT_READ | PROT_EXEC: a library after the seal
        ("mmap", (0, 4096, 0x1_0000_0003), ALLOW),  # high bits, no PROT_EXEC
        ("mprotect", (0, 4096, 1), ALLOW),  # RELRO: read-only
        ("mprotect", (0, 4096, 5), DENY),
        ("pkey_mprotect", (0, 4096, 4, 1), DENY),
        ("shmat", (1, 0, 0o100000), DENY),  # SHM_EXEC
        ("shmat", (1, 0, 0), ALLOW),
        ("personality", (0x0400000,), DENY),  # READ_IMPLIES_EXEC
        ("personality", (0,), ALLOW),
        ("memfd_create", (0, 0), DENY),
        ("execve", (), DENY),
        ("execveat", (), DENY),
        ("ptrace", (), DENY),
        ("init_module", (), DENY),
        ("kexec_load", (), DENY),
        ("bpf", (), DENY),
        ("mknodat", (), DENY),
    ],
)
def test_verdicts(name: str, args: tuple[int, ...], verdict: int) -> None:
    assert decide(PROGRAM, NR[name], args) == verdict


def test_a_mount_is_refused_and_an_unmount_is_not() -> None:
    """A VM's app is root: after the seal, a proc mounted again read-write (or a new one
    under /tmp) would open /proc/self/mem, whose writes reach code pages (rule seal.kernel).
    Its shutdown still unmounts its volumes (umount2, 166)."""
    for name in ("mount", "pivot_root", "open_tree", "move_mount", "fsopen", "fsconfig",
                 "fsmount", "fspick", "mount_setattr"):  # fmt: skip
        assert decide(PROGRAM, NR[name]) == DENY, name
    assert decide(PROGRAM, 166) == ALLOW


def test_everyday_calls_pass() -> None:
    for nr in (0, 1, 3, 7, 11, 12, 56, 202, 231, 232, 257, 318):  # read, write... getrandom
        assert decide(PROGRAM, nr) == ALLOW, nr


def test_another_architecture_kills_and_x32_is_refused() -> None:
    assert decide(PROGRAM, 0, arch=AUDIT_ARCH_I386) == KILL
    assert decide(PROGRAM, seal.X32_SYSCALL_BIT | 9, (0, 4096, 3)) == DENY


@given(
    st.integers(min_value=0, max_value=460),
    st.tuples(*[st.integers(min_value=0, max_value=2**64 - 1)] * 3),
)
def test_the_program_decides_as_the_table_says(nr: int, args: tuple[int, int, int]) -> None:
    assert decide(PROGRAM, nr, args) == reference(nr, args)


def test_labels_resolve_into_forward_jumps() -> None:
    body: list[seal.Instruction | tuple[str, str]] = [
        (seal.BPF_JEQ_K, 1, "b", None),
        (seal.BPF_RET_K, 0, None, None),
        ("label", "b"),
        (seal.BPF_RET_K, 1, None, None),
    ]
    assert seal.assemble(body) == [(seal.BPF_JEQ_K, 1, 0, 1), (6, 0, 0, 0), (6, 0, 0, 1)]
    far = [(seal.BPF_JEQ_K, 1, "end", None)] + [(seal.BPF_RET_K, 0, None, None)] * 300
    with pytest.raises(ValueError, match="out of reach"):
        seal.assemble([*far, ("label", "end"), (seal.BPF_RET_K, 1, None, None)])
    assert len(seal.program_bytes(PROGRAM)) == 8 * len(PROGRAM)


CHILD = r"""
import mmap, os, sys, threading
from summon.runtime import seal

started = threading.Event()
done = threading.Event()
results = {}

def worker():
    started.set()
    done.wait()
    try:
        mmap.mmap(-1, 4096, prot=7)
        results["thread"] = "allowed"
    except OSError as e:
        results["thread"] = e.errno

t = threading.Thread(target=worker)
t.start()
started.wait()
seal.install_filter(seal.filter_program())
done.set()
t.join()
mmap.mmap(-1, 4096, prot=3).close()
for name, call in [("mmap_exec", lambda: mmap.mmap(-1, 4096, prot=7)),
                   ("memfd", lambda: os.memfd_create("x")),
                   ("exec", lambda: os.execv(sys.executable, [sys.executable, "-c", "0"]))]:
    try:
        call()
        results[name] = "allowed"
    except OSError as e:
        results[name] = e.errno
print(results)
"""


def test_the_kernel_runs_the_program_for_every_thread() -> None:
    """TSYNC: a thread started before the seal is held too."""
    result = subprocess.run(
        [sys.executable, "-S", "-c", CHILD],
        env={"PYTHONPATH": str(SRC)},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str({"thread": 1, "mmap_exec": 1, "memfd": 1, "exec": 1})
