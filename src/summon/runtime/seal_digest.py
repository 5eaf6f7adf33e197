"""What the seal hashes of code it was told the build learned (docs/sealing.md, "Code the
build saw"): a source's SHA-256, and a syntax tree's, by a walk of exactly what compile()
reads of it. Imported by seal_hook only for an image with learned code (or the build's
learning run), so that other sealed starts do not pay for it.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any


def load_sha256() -> Any:
    """SHA-256 from a module built into the interpreter (no OpenSSL to load at the seal):
    _sha256 up to Python 3.11, _sha2 from 3.12; hashlib's otherwise."""
    try:
        from _sha256 import sha256  # type: ignore[import-not-found]
    except ImportError:  # pragma: no cover - Python 3.12 and later
        try:
            from _sha2 import sha256  # type: ignore[import-not-found]
        except ImportError:
            from hashlib import sha256
    return sha256


def make_ast_digest(sha256: Any) -> Callable[[object], str | None]:
    """A SHA-256 of what compile() reads of a syntax tree (sanic-routing compiles one it
    made with ast.parse and rewrote), or None when the tree is anything but plain data.

    Plain data: every node of an exact ast class, every value an exact str, bytes, int,
    float, complex, bool, None, Ellipsis, a tuple of those or a list of nodes, and the ast
    classes as they were when the seal closed (no attribute, base or lookup hook changed on
    them since, which could make compile() read other values than this walk). The walk
    runs no Python code of anyone's and the collector is off during it, so nothing can
    change the tree between what it reads and what compile() reads next.
    """
    import _ast
    import gc

    _isenabled, _disable, _enable = gc.isenabled, gc.disable, gc.enable
    _type, _repr, _len, _getattr = type, repr, len, getattr
    _str, _list, _tuple = str, list, tuple
    _value_error = ValueError
    _MAX_TREE_ITEMS = 1_000_000  # a router of thousands of routes is tens of thousands
    absent = object()
    classes: dict[type, tuple[int, tuple[str, ...]]] = {}
    for value in vars(_ast).values():
        if isinstance(value, type) and issubclass(value, _ast.AST):
            fields = (*value._fields, *getattr(value, "_attributes", ()))
            classes[value] = (len(classes), tuple(str(f) for f in fields))
    looked_up = {"__getattribute__", "__getattr__", "__dict__", "__class__"}
    looked_up.update(name for _index, fields in classes.values() for name in fields)
    guard = tuple(
        (cls, name, cls.__dict__.get(name, absent)) for cls in classes for name in sorted(looked_up)
    )
    mros = tuple((cls, cls.__mro__) for cls in classes)
    scalars = {
        str: "s", bytes: "b", int: "i", float: "f", complex: "c", bool: "B",
        type(None): "N", type(...): "E",
    }  # fmt: skip
    # Read-only views: the seal's hook checks its cells, not what a dict holds (seal_hook).
    from types import MappingProxyType

    classes, scalars = MappingProxyType(classes), MappingProxyType(scalars)  # type: ignore[assignment]

    def ast_digest(tree: object) -> str | None:
        if _type(tree) not in classes:
            return None
        for cls, name, value in guard:
            if cls.__dict__.get(name, absent) is not value:
                return None
        for cls, mro in mros:
            if cls.__mro__ is not mro:
                return None
        was_enabled = _isenabled()
        _disable()
        try:
            out: list[str] = ["ast"]
            todo: list[object] = [tree]
            budget = _MAX_TREE_ITEMS  # a list that holds itself would never end
            while todo:
                budget -= 1
                if budget < 0:
                    return None
                item = todo.pop()
                kind = _type(item)
                known = classes.get(kind)
                if known is not None:
                    index, fields = known
                    out.append(f"n{index}")
                    todo.extend(_getattr(item, f, absent) for f in reversed(fields))
                elif kind is _list or kind is _tuple:
                    out.append(f"{'l' if kind is _list else 't'}{_len(item)}")  # type: ignore[arg-type]
                    todo.extend(reversed(item))  # type: ignore[call-overload]
                elif item is absent:
                    out.append("-")
                else:
                    code = scalars.get(kind)
                    if code is None:
                        return None
                    out.append(code + _repr(item))
        except _value_error:
            return None  # an int too long to write out
        finally:
            if was_enabled:
                _enable()
        return _str(sha256("\0".join(out).encode("utf-8", "surrogatepass")).hexdigest())

    return ast_digest
