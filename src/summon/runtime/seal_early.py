"""The build's recording run: code the app compiles from strings before the seal, learned too.

A library may make the same code again once the app serves: connexion validates its spec at
start, and again at each GET of /openapi.json, and jsonschema makes a validator class there
with attrs, which compiles the class's methods from text made of its fields; SQLAlchemy-like
caches, a class factory a request calls. That code is the app's own, the same at every start,
and compiled before any request was read, so the build can see it as it sees the code made
after the seal (docs/sealing.md, "Code the build saw"). The sealed image then lets exactly
that source, under that name, through again; a compile of anything else is still refused.

Not learned here, being decided by rules of the seal's own whatever the run saw: what the
stdlib's typing (string annotations), ast (parse only), collections (namedtuple's template)
and dataclasses compile, what the import system compiles, and code named after a file (an
image file's text, a template file the image ships).

Installed only by the learning run's runtime (SUMMON_SEAL_LEARN, never an image's own
environment), before the app's code runs; an audit hook cannot be removed, so it stays and
does nothing once the seal has closed. Image-side: stdlib only.
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    Learn = Callable[[str, str], None]

_STDLIB = getattr(sys, "_stdlib_dir", None) or "/nonexistent"
# Compiles these files make are the sealed hook's to decide by rules of its own.
OWN_RULES = frozenset(
    f"{_STDLIB}/{name}"
    for name in ("typing.py", "ast.py", "dataclasses.py", "collections/__init__.py")
)


def make_hook(learn: Learn, sealed: Callable[[], bool]) -> Callable[[str, tuple[Any, ...]], None]:
    """An audit hook that tells learn(SHA-256, file name) of each compile from a string or a
    syntax tree until sealed() is true (the sealed hook learns what comes after)."""
    from summon.runtime import seal_digest

    sha256 = seal_digest.load_sha256()
    ast_digest = seal_digest.make_ast_digest(sha256)
    seen: set[tuple[str, str]] = set()

    def early_compile_hook(event: str, args: tuple[Any, ...]) -> None:
        if event != "compile" or sealed():
            return
        try:
            caller = sys._getframe(1).f_code.co_filename
        except ValueError:  # no Python frame: native code compiling
            caller = ""
        if caller in OWN_RULES or caller.startswith("<frozen importlib"):
            return
        source, filename = args[0], args[1]
        if isinstance(filename, bytes):
            filename = filename.decode("utf-8", "surrogateescape")
        name = filename if isinstance(filename, str) else ""
        if name.startswith("/"):
            return  # a file's code: the sealed hook compares it with the file
        if isinstance(source, str):
            digest: str | None = sha256(source.encode("utf-8", "surrogatepass")).hexdigest()
        elif isinstance(source, bytes):
            digest = sha256(source).hexdigest()
        else:
            digest = ast_digest(source)  # None: not a plain syntax tree
        if digest is None or (digest, name) in seen:
            return
        seen.add((digest, name))
        learn(digest, name)

    return early_compile_hook


def install(learn: Learn, sealed: Callable[[], bool]) -> None:
    """Learn, from now until the seal, what the app compiles from strings (make_hook)."""
    sys.addaudithook(make_hook(learn, sealed))
