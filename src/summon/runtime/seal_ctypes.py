"""After the seal no ctypes object can be made: ctypes' types stay loaded, but inert.

The seal needs ctypes to install its filter, so the `_ctypes` extension is initialized in
every sealed instance, and its types stay reachable by code that runs after the seal: through
`object.__subclasses__()`, or `importlib.import_module("_ctypes")`, which raises no audit event
and makes the module again from the copy the interpreter keeps. With them alone, Python code
writes any memory of the process and raises no event on Python 3.11: a Union of a `c_void_p`
and a pointer to a char array, given an address, writes through it; a function pointer made at
`_memmove_addr` is called with `id()`s; a Structure whose field sits past a huge array, made
by `object.__new__`, writes at that absolute address.

So, once the runtime has made the last ctypes objects it needs (its filter, a VM's shutdown
calls), `disarm` makes every ctypes data type refuse to make an instance (rule seal.ctypes):
- each type's `__new__` becomes a function that refuses, in its class dict (the static types
  of `_ctypes` are immutable: their flag is cleared for the change and set again), so a type
  made later finds it too (type creation looks `__new__` up along the bases);
- the static types' own slot (what `type.__call__` and `object.__new__`'s safety check read)
  becomes `NoneType`'s: calling one makes no object, and `object.__new__(a ctypes type)` is
  refused as "not safe", as before, instead of making an instance whose buffer is at 0;
- the `_ctypes` module, and the copy a new import is made from, lose what needs no object to
  reach memory or code: `Py_INCREF`/`Py_DECREF` (a use after free), `PyObj_FromPtr`, the
  `call_function` family, `dlopen`/`dlsym`, the `_*_addr` function addresses;
- every foreign function refuses to be called (`CFuncPtr.__call__`, which its subclasses,
  made before or after, inherit), as Python 3.12's audit event `ctypes.call_function` lets
  the hook refuse it: on 3.11 a function pointer an app took before the seal
  (`ctypes.memmove`, `ctypes.pythonapi.X`, a CFUNCTYPE of a libc address) was called after
  it with no event, and memmove writes any memory of the process (the hook's own state, the
  interpreter's list of audit hooks). The runtime's own (`keep`: a VM's shutdown) keep
  their class's C call, and that class is made immutable, so no other object can be moved
  into it (`__class__` assignment), and loses its buffer (a memoryview re-aimed them).
- a pointer refuses to be followed (`p[n]`, `p.contents`): one made before the seal read and
  wrote any address, `p[n]` having no bounds; and no ctypes type can be made (their
  metaclasses' `__new__` as the types'): a Structure made before the seal, given a type of
  one layout whose field lies a terabyte in (`__class__` assignment), reached any address
  (`type.__new__(the metaclass, ...)` still makes a type, one without ctypes' own state,
  whose fields cannot be set).
ctypes data objects made before (an app's own) keep their buffers; see docs/sealing.md.

Image-side: stdlib only. Reads and writes CPython's type objects by offset, checked first
against what Python says of the same fields; a layout that does not match leaves it undone.
"""

from __future__ import annotations

import contextlib
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence
    from typing import Any

RULE_CTYPES = "seal.ctypes: no foreign calls after the seal"
# PyTypeObject on 64-bit CPython 3.8 to 3.13: these fields have not moved.
OFFSET_BASICSIZE, OFFSET_CALL, OFFSET_AS_BUFFER, OFFSET_FLAGS = 32, 128, 160, 168
OFFSET_BASE, OFFSET_NEW = 256, 312
OFFSET_D_WRAPPED = 48  # PyWrapperDescrObject: the C function a slot wrapper calls
IMMUTABLETYPE = 1 << 8
HEAPTYPE = 1 << 9
# PyModuleObject.md_def, then PyModuleDef_Base.m_copy: the dict a new import is made from.
OFFSET_MD_DEF, OFFSET_M_COPY = 24, 32
DROPPED = (
    "Py_INCREF", "Py_DECREF", "PyObj_FromPtr", "call_function", "call_cdeclfunction",
    "dlopen", "dlsym", "dlclose", "_memmove_addr", "_memset_addr", "_string_at_addr",
    "_wstring_at_addr", "_cast_addr",
)  # fmt: skip


def disarm(
    report: Callable[[str, str, bool], None],
    earlier: Sequence[Any] = (),
    keep: Sequence[Any] = (),
) -> str | None:
    """Make ctypes objects unmakeable, and foreign functions uncallable, from now on; None, or
    why it was left undone. earlier: ctypes' modules as they were before a new import of it
    (seal.activate); keep: the runtime's own function pointers, still called after the seal."""
    import _ctypes
    import ctypes

    word = ctypes.c_ssize_t
    base: type = _ctypes.CFuncPtr.__mro__[1]  # _ctypes._CData
    if not _layout_holds(word):
        return "this interpreter's type objects are not laid out as expected"
    # Each _ctypes module object there was: one made again from the copy has no module
    # definition (md_def is NULL); the first one made has, and the copy hangs from it.
    modules = [_ctypes, *(m for m in earlier if getattr(m, "__name__", "") == "_ctypes")]
    tables = [vars(m) for m in modules]
    for module in modules:
        module_def = ctypes.c_void_p.from_address(id(module) + OFFSET_MD_DEF).value
        if module_def:
            kept = ctypes.c_void_p.from_address(module_def + OFFSET_M_COPY).value
            copy = ctypes.cast(kept, ctypes.py_object).value if kept else None
            if type(copy) is dict:
                tables.append(copy)
    for names in tables:
        for name in DROPPED:
            names.pop(name, None)
    said: list[str] = []

    def refuse(cls: Any, *args: Any, **kwargs: Any) -> Any:
        what = "making a ctypes object"
        if not said:
            said.append(what)
            report(what, RULE_CTYPES, True)
        raise PermissionError(1, f"{what} refused by the seal ({RULE_CTYPES})")

    def refuse_call(self: Any, *args: Any, **kwargs: Any) -> Any:
        what = "calling a foreign function"
        if what not in said:
            said.append(what)
            report(what, RULE_CTYPES, True)
        raise PermissionError(1, f"{what} refused by the seal ({RULE_CTYPES})")

    new = staticmethod(refuse)
    none_new = word.from_address(id(type(None)) + OFFSET_NEW).value
    types = _subclasses(base)
    static = [t for t in types if not t.__flags__ & HEAPTYPE]
    for t in static:  # the bases first: their change reaches the subclasses made later
        flags = word.from_address(id(t) + OFFSET_FLAGS)
        flags.value &= ~IMMUTABLETYPE
        try:
            t.__new__ = new  # type: ignore[assignment]
        finally:
            flags.value |= IMMUTABLETYPE
    for t in types:
        if t.__flags__ & HEAPTYPE:
            t.__new__ = new  # type: ignore[assignment]
    for t in static:
        word.from_address(id(t) + OFFSET_NEW).value = none_new
    # And no ctypes type: given an Array or a Structure made before the seal, `obj.__class__
    # = c_char * 2**40` (one layout) reached any address at an offset from its buffer.
    metas: set[type] = {type(t) for t in static} - {type}
    for meta in metas:
        with _mutable(word, meta):
            meta.__new__ = new  # type: ignore[assignment]
    _refuse_calls(word, refuse_call, keep)

    def refuse_reach(self: Any, *args: Any) -> Any:
        what = "reaching memory through a ctypes pointer"
        if what not in said:
            said.append(what)
            report(what, RULE_CTYPES, True)
        raise PermissionError(1, f"{what} refused by the seal ({RULE_CTYPES})")

    # A pointer made before the seal reads and writes any address: p[n] has no bounds, and
    # p.contents is an object at p's address. What a pointer is for is a foreign call.
    pointer: type = _ctypes._Pointer
    with _mutable(word, pointer):
        for name in ("__getitem__", "__setitem__", "__delitem__"):
            setattr(pointer, name, refuse_reach)
        pointer.contents = property(refuse_reach, refuse_reach)  # type: ignore[attr-defined]

    return None


@contextlib.contextmanager
def _mutable(word: Any, t: type) -> Iterator[None]:
    """A static (immutable) type's attributes settable while the block runs."""
    flags = word.from_address(id(t) + OFFSET_FLAGS)
    flags.value &= ~IMMUTABLETYPE
    try:
        yield
    finally:
        flags.value |= IMMUTABLETYPE


def _refuse_calls(word: Any, refuse_call: Callable[..., Any], keep: Sequence[Any]) -> None:
    """Every foreign function's call refuses, but those of keep's classes.

    Set on CFuncPtr (static: its immutable flag cleared for the change), `__call__` reaches
    each subclass that does not define its own (Python updates their slot), and each made
    later. An app's subclass that defines `__call__` reaches the C call only through
    CFuncPtr's, which is this one now. The C call's descriptor leaves CFuncPtr's dict, and
    whoever kept it from before (`CFuncPtr.__call__`, or a bound `f.__call__`, taken at
    import) finds it calling the generic slot instead, which looks `__call__` up: this one.
    keep's classes get the C call back in their slot alone (no
    descriptor to find), and become immutable: their `__call__` cannot be set, and no object
    of another class can be given theirs; and they lose the buffer protocol, through which a
    memoryview of one rewrote the address it calls."""
    import _ctypes

    class Generic:
        def __call__(self) -> None:
            pass

    funcptr: type = _ctypes.CFuncPtr
    c_call = word.from_address(id(funcptr) + OFFSET_CALL).value
    old = vars(funcptr)["__call__"]  # the slot wrapper of the C call
    if type(old) is type(vars(type)["__call__"]):
        generic = word.from_address(id(Generic) + OFFSET_CALL).value
        word.from_address(id(old) + OFFSET_D_WRAPPED).value = generic
    flags = word.from_address(id(funcptr) + OFFSET_FLAGS)
    flags.value &= ~IMMUTABLETYPE
    try:
        funcptr.__call__ = refuse_call  # type: ignore[method-assign]
    finally:
        flags.value |= IMMUTABLETYPE
    for cls in {type(f) for f in keep if isinstance(f, funcptr)}:
        word.from_address(id(cls) + OFFSET_CALL).value = c_call
        word.from_address(id(cls) + OFFSET_AS_BUFFER).value = 0
        word.from_address(id(cls) + OFFSET_FLAGS).value |= IMMUTABLETYPE


def _subclasses(root: type) -> list[type]:
    """root and every class under it, each before its subclasses."""
    out, todo = [], [root]
    while todo:
        t = todo.pop(0)
        if t not in out:
            out.append(t)
            todo += type.__subclasses__(t)
    return out


def _layout_holds(word: Any) -> bool:
    """Whether the offsets above read what Python says of the same types."""
    if sys.maxsize != 2**63 - 1:
        return False

    class A:
        def __new__(cls) -> Any:
            return None

        def __call__(self) -> None:
            pass

    class B:
        def __new__(cls) -> Any:
            return None

        def __call__(self) -> None:
            pass

    def read(t: object, offset: int) -> int:
        return int(word.from_address(id(t) + offset).value)

    for t in (object, type(None), int, A):
        if read(t, OFFSET_FLAGS) != t.__flags__ or read(t, OFFSET_BASICSIZE) != t.__basicsize__:
            return False
    # tp_call: NULL for object; slot_tp_call, the same, for every class with a __call__
    slot_call = read(A, OFFSET_CALL)
    if read(object, OFFSET_CALL) != 0 or slot_call == 0 or read(B, OFFSET_CALL) != slot_call:
        return False
    if read(type, OFFSET_CALL) in (0, slot_call):
        return False
    if read(object, OFFSET_AS_BUFFER) != 0 or read(bytes, OFFSET_AS_BUFFER) == 0:
        return False
    if read(vars(type)["__call__"], OFFSET_D_WRAPPED) != read(type, OFFSET_CALL):
        return False
    if read(A, OFFSET_BASE) != id(object) or read(int, OFFSET_BASE) != id(object):
        return False
    slot = read(A, OFFSET_NEW)  # slot_tp_new, the same for every class with a __new__
    others = {read(t, OFFSET_NEW) for t in (object, int, type(None))}
    return slot == read(B, OFFSET_NEW) and len(others | {slot}) == 4
