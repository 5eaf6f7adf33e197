"""Foreign functions an app took before the seal are not called after it.

Rule seal.ctypes (seal_ctypes.disarm): Python 3.11 raises no audit event when a ctypes
function pointer is called, and the seal left the ones made before it working. An app (or
what a request made it run) took `ctypes.memmove`, `ctypes.pythonapi.PyRun_SimpleString` or a
CFUNCTYPE of a libc address at import and called it after the seal: memmove wrote any memory
of the process (the hook's own state, the interpreter's list of audit hooks) with no event.
Now every call refuses, but the runtime's own (a VM's shutdown: `keep`), whose class keeps
the C call, cannot be given to another object, and has no buffer to re-aim it through; and
the C call's slot wrapper, if code kept it from before (`CFuncPtr.__call__`), calls the
refusal too.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

SRC = Path(__file__).resolve().parents[3] / "src"

CHILD = r"""
import ctypes, json, sys
from summon.runtime import seal_ctypes

libc = ctypes.CDLL(None)
getpid = libc.getpid
memmove = ctypes.memmove
run_string = ctypes.pythonapi.PyRun_SimpleString
address = ctypes.cast(libc.getpid, ctypes.c_void_p).value
wrapped = ctypes.CFUNCTYPE(ctypes.c_int)(address)


class Own(ctypes.CFUNCTYPE(ctypes.c_int)):
    _flags_ = ctypes._FUNCFLAG_CDECL
    _restype_ = ctypes.c_int

    def __call__(self, *args):
        return super().__call__(*args)


own = Own(address)
shutdown = ctypes.CDLL(None)  # as the runtime's libc in a VM: its pointer stays callable
kept = shutdown.getppid
measure = shutdown.strlen  # arguments converted as a VM's umount(path) and reboot(int) are
measure.argtypes, measure.restype = (ctypes.c_char_p,), ctypes.c_size_t
held_slot = type(getpid).__call__  # the C call's slot wrapper, kept from before the seal
held_bound = memmove.__call__
victim = bytes(b"sealed bytes")
cell = ctypes.c_char(b"a")
far = ctypes.pointer(cell)  # p[n] reaches n bytes past cell's buffer, whatever n is


class Holder(ctypes.Structure):
    _fields_ = [("to", ctypes.POINTER(ctypes.c_char))]


holder = Holder(far)

said = []


def attempt(name, action):
    try:
        got = {"ok": True, "detail": repr(action())}
    except Exception as e:
        got = {"ok": False, "kind": type(e).__name__, "detail": str(e)}
    print(json.dumps({name: got}), flush=True)


def write_victim():
    memmove(id(victim) + 32, b"X", 1)
    return victim[:6].decode()


attempt("before_memmove", write_victim)
undone = seal_ctypes.disarm(lambda what, rule, enforce: said.append((what, rule)),
                            keep=[kept, measure])
assert undone is None, undone
for name, action in [
    ("memmove", write_victim),
    ("run_string", lambda: run_string(b"print('code after the seal')")),
    ("dlsym_pointer", getpid),
    ("cfunctype", wrapped),
    ("own_subclass", own),
    ("kept", lambda: kept() == __import__("os").getppid() and measure(b"umount") == 6),
    ("class_moved_to_kept", lambda: setattr(getpid, "__class__", type(kept))),
    ("kept_call_replaced", lambda: setattr(type(kept), "__call__", None)),
    ("kept_reaimed", lambda: memoryview(kept)),
    ("own_call_deleted", lambda: (delattr(Own, "__call__"), own())),
    ("held_slot_wrapper", lambda: held_slot(getpid)),
    ("held_bound_call", lambda: held_bound(id(victim) + 32, b"Y", 1)),
    ("pointer_read", lambda: far[0]),
    ("pointer_write", lambda: far.__setitem__(0, b"z")),
    ("pointer_contents", lambda: far.contents),
    ("field_pointer_write", lambda: holder.to.__setitem__(0, b"z")),
    ("array_type", lambda: ctypes.c_char * (1 << 40)),
    ("structure_type", lambda: type(ctypes.Structure)("Far", (ctypes.Structure,), {})),
]:
    attempt(name, action)
print(json.dumps({"said": said}), flush=True)
"""


@pytest.fixture(scope="module")
def results() -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", CHILD],
        env={"PYTHONPATH": str(SRC)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "code after the seal" not in done.stdout, done.stdout
    out: dict[str, Any] = {}
    for line in done.stdout.splitlines():
        out.update(json.loads(line))
    return out


def test_control_before_the_seal_memmove_writes_memory(results: dict[str, Any]) -> None:
    assert results["before_memmove"] == {"ok": True, "detail": "'Xealed'"}


@pytest.mark.parametrize(
    "probe", ["memmove", "run_string", "dlsym_pointer", "cfunctype", "own_subclass",
              "own_call_deleted", "held_slot_wrapper", "held_bound_call"],
)  # fmt: skip
def test_after_the_seal_no_foreign_function_is_called(results: dict[str, Any], probe: str) -> None:
    got = results[probe]
    assert (got["ok"], got.get("kind")) == (False, "PermissionError"), got
    assert "calling a foreign function refused by the seal (seal.ctypes" in got["detail"], got
    assert ["calling a foreign function", seal_ctypes_rule()] in results["said"]


@pytest.mark.parametrize(
    "probe", ["pointer_read", "pointer_write", "pointer_contents", "field_pointer_write"]
)
def test_after_the_seal_no_pointer_is_followed(results: dict[str, Any], probe: str) -> None:
    """A pointer made before the seal read and wrote any address (p[n] has no bounds)."""
    got = results[probe]
    assert (got["ok"], got.get("kind")) == (False, "PermissionError"), got
    assert "reaching memory through a ctypes pointer refused by the seal" in got["detail"]
    said = [what for what, rule in results["said"] if rule == seal_ctypes_rule()]
    assert sorted(said) == [
        "calling a foreign function",
        "reaching memory through a ctypes pointer",
    ]


def test_the_runtime_s_own_pointer_is_still_called(results: dict[str, Any]) -> None:
    assert results["kept"] == {"ok": True, "detail": "True"}


@pytest.mark.parametrize("probe", ["array_type", "structure_type"])
def test_after_the_seal_no_ctypes_type_is_made(results: dict[str, Any], probe: str) -> None:
    """A Structure made before the seal, given a type of one layout whose field lies a
    terabyte in (`obj.__class__ = Far`), read and wrote there."""
    got = results[probe]
    assert (got["ok"], got.get("kind")) == (False, "PermissionError"), got
    assert "making a ctypes object refused by the seal (seal.ctypes" in got["detail"], got


@pytest.mark.parametrize(
    ("probe", "message"),
    [
        ("class_moved_to_kept", "__class__ assignment only supported for mutable types"),
        ("kept_call_replaced", "immutable type"),
        ("kept_reaimed", "a bytes-like object is required"),
    ],
)
def test_the_kept_class_lends_its_call_to_nothing_else(
    results: dict[str, Any], probe: str, message: str
) -> None:
    got = results[probe]
    assert (got["ok"], got.get("kind")) == (False, "TypeError"), got
    assert message in got["detail"], got


def seal_ctypes_rule() -> str:
    from summon.runtime.seal_ctypes import RULE_CTYPES

    return RULE_CTYPES
