"""Code libraries make lazily, made before the seal closes.

Some libraries generate Python source for their own classes the first time each class is
used, and compile it: after the seal that is refused (seal.code), though what they compile
is theirs, fixed by their classes and the same at every start. For such a library, when the
app has imported it, its generated code is made here, just before the seal, so that no
request ever needs it made later. Each preparation runs only if its module is loaded, reads
only what the library itself would, and makes nothing for a version laid out otherwise (the
seal then refuses as before, naming what was compiled); one that fails says so in a line.

What cannot be made ahead is said instead. web.py's Templetor compiles a template the first
time it is rendered and caches it (a warm-up request that renders it makes it before the
seal), but in web.py's debug mode, its default unless the environment names a server, it
compiles at every render and never caches: the seal would refuse each render after it, so
the app is told how to leave debug mode.

SQLAlchemy 2.x (tested with 2.1.9): every SQL element class (HasTraverseInternals) gets its copy and
get-children dispatchers made on its first clone or traversal, and HasShallowCopy classes
their shallow-copy functions, from `_traverse_internals`. SQLAlchemy's own
traversals._preconfigure_traversals does the first part, but also computes cache-key
attributes (and warns for classes without caching); only the dispatchers are made here.

cattrs (tested with 26.2): a converter makes a structure and an unstructure function for each
attrs class or dataclass at its first use (`<cattrs generated structure main.Order>`), so
the first request that posts an Order answered 500 sealed. They are made here, with the
converter's own get_structure_hook/get_unstructure_hook, for every converter that exists
and every such class the app's own modules (files under its folder) define at the seal.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Callable, Iterator

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def _subclasses(root: type) -> Iterator[type]:
    seen: set[type] = set()
    stack = [root]
    while stack:
        cls = stack.pop()
        if cls in seen:
            continue
        seen.add(cls)
        yield cls
        stack.extend(cls.__subclasses__())


def _sqlalchemy() -> int:
    traversals = sys.modules.get("sqlalchemy.sql.traversals")
    visitors = sys.modules.get("sqlalchemy.sql.visitors")
    if traversals is None or visitors is None:
        return 0
    made = 0
    dispatchers = [
        (getattr(traversals, "_copy_internals", None), "_generated_copy_internals_traversal"),
        (getattr(traversals, "_get_children", None), "_generated_get_children_traversal"),
    ]
    root = getattr(visitors, "HasTraverseInternals", None)
    if root is None:
        return 0  # laid out otherwise (before 2.0): the seal refuses as it would
    for cls in _subclasses(root):
        internals = getattr(cls, "_traverse_internals", None)
        if not isinstance(internals, list | tuple):
            continue
        for visitor, name in dispatchers:
            if visitor is not None and name not in cls.__dict__:
                visitor.generate_dispatch(cls, internals, name)
                made += 1
    shallow = getattr(traversals, "HasShallowCopy", None)
    if shallow is not None:
        for cls in _subclasses(shallow):
            internals = getattr(cls, "_traverse_internals", None)
            if not isinstance(internals, list | tuple):
                continue
            for kind in ("copy", "to_dict", "from_dict"):
                name = f"_generated_shallow_{kind}_traversal"
                if name not in cls.__dict__:
                    setattr(cls, name, getattr(cls, f"_generate_shallow_{kind}")(internals, name))
                    made += 1
    return made


def _app_classes(has: Callable[[type], bool]) -> list[type]:
    """The classes for which has() holds that modules of the app's own folder define."""
    folder = os.getcwd().rstrip("/") + "/"
    found: list[type] = []
    for name, module in list(sys.modules.items()):
        if not str(getattr(module, "__file__", None) or "").startswith(folder):
            continue
        for value in list(vars(module).values()):
            if isinstance(value, type) and value.__module__ == name and has(value):
                found.append(value)
    return found


def _cattrs() -> int:
    import dataclasses
    import gc

    converters = sys.modules.get("cattrs.converters")
    base = getattr(converters, "Converter", None)
    if not isinstance(base, type) or not hasattr(base, "get_structure_hook"):
        return 0  # laid out otherwise (before 23.2): the seal refuses as it would
    attr = sys.modules.get("attr")
    has_attrs = getattr(attr, "has", None) or (lambda cls: False)
    classes = _app_classes(lambda cls: bool(has_attrs(cls) or dataclasses.is_dataclass(cls)))
    if not classes:
        return 0
    made = 0
    converter: Any
    for converter in [o for o in gc.get_objects() if isinstance(o, base)]:
        for cls in classes:
            for make in (converter.get_structure_hook, converter.get_unstructure_hook):
                try:
                    make(cls)
                    made += 1
                except Exception:  # a class this converter cannot handle: it would say so
                    pass
    return made


def _webpy_debug() -> str | None:
    """Why web.py's templates will be compiled after the seal, or None."""
    webapi = sys.modules.get("web.webapi")
    config = getattr(webapi, "config", None)
    if "web.template" not in sys.modules or not isinstance(config, dict):
        return None
    if not config.get("debug"):
        return None
    return (
        "sealed: web.py is in debug mode (its default when the environment names no server): "
        "it compiles each template again at every render, and its error page at every error; "
        "only what the build's warm-up compiled is allowed from now on: set "
        "web.config.debug = False in the app, and list the paths that render a template in "
        'warm_up = ["/", ...] (docs/sealing.md)'
    )


# module that must be loaded -> what makes its lazily generated code
PREPARATIONS: dict[str, Callable[[], int]] = {"sqlalchemy": _sqlalchemy, "cattrs": _cattrs}


def prepare(say: Callable[[str], None] | None = None) -> int:
    """Make the lazily generated code of every loaded library that has a preparation; how
    many pieces. A preparation that fails is left, said if `say` is given."""
    made = 0
    advice = _webpy_debug()
    if advice is not None and say is not None:
        say(advice)
    for module, preparation in PREPARATIONS.items():
        if module not in sys.modules:
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                made += preparation()
        except Exception as e:  # a version laid out otherwise: the seal refuses as before
            if say is not None:
                say(f"sealed: could not make {module}'s generated code ahead: {e!r}")
    return made
