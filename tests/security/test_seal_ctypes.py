"""After the seal, ctypes' types are loaded (the seal used them) but make no object.

Rule seal.ctypes (seal_ctypes.py): the seal imports ctypes to install its filter, so the
`_ctypes` extension is initialized in every sealed instance. On Python 3.11 its types alone
write any memory without one audit event: `importlib.import_module("_ctypes")` (no event)
gives them back, a Union of a `c_void_p` and a pointer is pointed at a bytes object and writes
into it. The app here does that before the seal (the control: it works) and after it, and
tries the other roads: the types found by walking `object.__subclasses__()`, a Structure
whose field lies a terabyte in made by `object.__new__` (its buffer would be at 0), the
function pointers ctypes made at import (memmove) through a ctypes function's `__globals__`,
and the `_ctypes` functions that need no object (`Py_DECREF`, `_memmove_addr`). A second app
imports ctypes itself and takes function pointers at import (memmove, PyRun_SimpleString, a
CFUNCTYPE of a libc address): each was called after the seal, with no audit event on 3.11.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hostile_apps import ATTEMPT, needs_sandbox
from sealed_image import Run, SealedImage, make_sealed_image

pytestmark = needs_sandbox

ATTACK = r"""
import importlib, json
from summon.devices import Stack


def union_write():
    m = importlib.import_module("_ctypes")  # raises no audit event

    class c_void_p(m._SimpleCData):
        _type_ = "P"

    class c_char(m._SimpleCData):
        _type_ = "c"

    class Chars(m.Array):
        _type_ = c_char
        _length_ = 4

    class Pointer(m._Pointer):
        _type_ = Chars

    class Both(m.Union):
        _fields_ = [("address", c_void_p), ("pointer", Pointer)]

    victim = b"sealed bytes, not to be changed" + bytes(range(4))
    both = Both()
    both.address = id(victim) + 32  # the bytes' data, after the object's header
    both.pointer.contents[0] = b"X"
    return victim[:6].decode()


def walked_type():
    cdata = [c for c in object.__subclasses__() if c.__name__ == "_CData"][0]
    simple = [c for c in cdata.__subclasses__() if c.__name__ == "_SimpleCData"][0]
    made = [c for c in simple.__subclasses__()]
    return repr(made[0](0)) if made else "no ctypes type was left to walk to"


def far_type():
    m = importlib.import_module("_ctypes")

    class c_char(m._SimpleCData):
        _type_ = "c"

    class c_long(m._SimpleCData):
        _type_ = "l"

    class Far(m.Structure):
        _fields_ = [("pad", c_char * (1 << 40)), ("x", c_long)]

    return Far


FAR = far_type()  # at import, before the seal: a type, no object


def far_field():
    return object.__new__(FAR).x


def import_time_memmove():
    cdll = [c for c in object.__subclasses__() if c.__name__ == "CDLL"]
    if not cdll:
        return "no CDLL class"
    memmove = cdll[0].__init__.__globals__.get("memmove")
    if memmove is None:
        return "no memmove"
    victim = b"sealed bytes, not to be changed"
    memmove(id(victim) + 32, b"X", 1)
    return victim[:6].decode()


def module_functions():
    m = importlib.import_module("_ctypes")
    return [n for n in ("Py_DECREF", "Py_INCREF", "PyObj_FromPtr", "_memmove_addr",
                        "call_function", "dlopen") if hasattr(m, n)]


# attempt(): hostile_apps.ATTEMPT


async def main(stack: Stack) -> int:
    attempt("before_union_write", union_write)
    server = await stack.start_server(lambda reader, writer: writer.close(), 8000)
    for name, action in [("union_write", union_write), ("walked_type", walked_type),
                         ("far_type", far_type),
                         ("far_field", far_field), ("import_time_memmove", import_time_memmove),
                         ("module_functions", module_functions)]:
        attempt(name, action)
    server.close()
    return 0
"""
ATTACK = ATTACK.replace("# attempt(): hostile_apps.ATTEMPT\n", ATTEMPT)


# An app that imported ctypes itself, and took function pointers at import, before the seal.
TAKEN_BEFORE = r"""
import ctypes, json
from summon.devices import Stack

memmove = ctypes.memmove
run_string = ctypes.pythonapi.PyRun_SimpleString
getpid = ctypes.CDLL(None).getpid
wrapped = ctypes.CFUNCTYPE(ctypes.c_int)(ctypes.cast(getpid, ctypes.c_void_p).value)
victim = bytes(b"sealed bytes, not to be changed")


def write():
    memmove(id(victim) + 32, b"X", 1)
    return victim[:6].decode()


# attempt(): hostile_apps.ATTEMPT


async def main(stack: Stack) -> int:
    attempt("before_memmove", write)
    server = await stack.start_server(lambda reader, writer: writer.close(), 8000)
    for name, action in [("memmove", write), ("getpid", getpid), ("cfunctype", wrapped),
                         ("run_string", lambda: run_string(b"print('code after the seal')"))]:
        attempt(name, action)
    server.close()
    return 0
"""
TAKEN_BEFORE = TAKEN_BEFORE.replace("# attempt(): hostile_apps.ATTEMPT\n", ATTEMPT)


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> SealedImage:
    return make_sealed_image(tmp_path_factory.mktemp("ctypes"))


@pytest.fixture(scope="module")
def sealed(image: SealedImage) -> Iterator[Run]:
    yield image.run({"attack.py": ATTACK}, image.app_json("attack:main"))


@pytest.fixture(scope="module")
def taken_before(image: SealedImage) -> Run:
    return image.run({"taken.py": TAKEN_BEFORE}, image.app_json("taken:main"))


def test_control_before_the_seal_ctypes_types_write_memory(sealed: Run) -> None:
    got = sealed.results["before_union_write"]
    assert got == {"probe": "before_union_write", "ok": True, "detail": "'Xealed'"}, sealed.output


@pytest.mark.parametrize("probe", ["union_write", "walked_type"])
def test_after_the_seal_no_ctypes_object_is_made(sealed: Run, probe: str) -> None:
    """Rule seal.ctypes: said once on the console, and in the PermissionError."""
    got = sealed.results[probe]
    assert (got["ok"], got.get("kind")) == (False, "PermissionError"), got
    assert "making a ctypes object refused by the seal (seal.ctypes" in got["detail"], got
    said = [line for line in sealed.lines("summon: sealed: refused") if "ctypes object" in line]
    assert len(said) == 1 and "seal.ctypes" in said[0], sealed.output


def test_after_the_seal_no_ctypes_type_is_made(sealed: Run) -> None:
    """Rule seal.ctypes: an object made before the seal, given a type of one layout whose
    field lies a terabyte in (`obj.__class__ = Far`), read and wrote there."""
    got = sealed.results["far_type"]
    assert (got["ok"], got.get("kind")) == (False, "PermissionError"), got
    assert "making a ctypes object refused by the seal (seal.ctypes" in got["detail"], got


def test_object_new_makes_no_ctypes_object_at_address_zero(sealed: Run) -> None:
    got = sealed.results["far_field"]
    assert (got["ok"], got.get("kind")) == (False, "TypeError"), got
    assert "is not safe" in got["detail"], got


def test_the_function_pointers_ctypes_made_at_import_are_gone(sealed: Run) -> None:
    """ctypes' modules are emptied as they leave sys.modules: with them, its CDLL class (and
    memmove, in its functions' __globals__) were reachable, and memmove wrote the bytes."""
    got = sealed.results["import_time_memmove"]
    assert got["ok"] and got["detail"] in ("'no CDLL class'", "'no memmove'"), got


def test_the_ctypes_functions_that_need_no_object_are_gone(sealed: Run) -> None:
    assert sealed.results["module_functions"] == {
        "probe": "module_functions", "ok": True, "detail": "[]"
    }, sealed.output  # fmt: skip
    assert sealed.status == 0, sealed.output


def test_control_before_the_seal_an_app_s_memmove_writes(taken_before: Run) -> None:
    got = taken_before.results["before_memmove"]
    assert got == {"probe": "before_memmove", "ok": True, "detail": "'Xealed'"}, got


@pytest.mark.parametrize("probe", ["memmove", "getpid", "cfunctype", "run_string"])
def test_after_the_seal_no_function_taken_before_it_is_called(
    taken_before: Run, probe: str
) -> None:
    """Rule seal.ctypes: Python 3.11 audits no foreign call, and memmove taken at import wrote
    the process's memory after the seal (the hook's state among it)."""
    got = taken_before.results[probe]
    assert (got["ok"], got.get("kind")) == (False, "PermissionError"), got
    assert "calling a foreign function refused by the seal (seal.ctypes" in got["detail"], got
    assert "code after the seal" not in taken_before.output
    said = [line for line in taken_before.lines("summon: sealed: refused") if "foreign" in line]
    assert len(said) == 1 and "seal.ctypes" in said[0], taken_before.output
