"""The manifest's entry: what the runtime calls, and the folder that goes in as /app."""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from summon.errors import ManifestError

# What a user who names a requirement's command as the entry (pserve, python -m aiohttp.web,
# waitress-serve) is told: the entry is looked for in the app's folder only.
OWN_CODE = (
    "the entry is the app's own code: to start a command one of its requirements installs "
    "(pserve production.ini, python -m aiohttp.web), call it from a script in the app's "
    'folder and make that the entry (entry = "run.py")'
)
MODULE_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*\Z")


@dataclass(frozen=True)
class Entry:
    """What the runtime calls: a function in a module, or a script run as __main__."""

    kind: str  # "function" | "script"
    module: str = ""
    function: str = ""
    script: str = ""  # path relative to the app folder
    # A script inside a package (pkg/__main__.py) runs as `python -m pkg` runs it: in that
    # package, so that its relative imports work.
    package: str = ""
    # An app factory's call, "module:create_app()" as Flask's --app and gunicorn spell it:
    # the runtime calls the function with these literal arguments and serves the WSGI or
    # ASGI app it returns. None for an entry without the call.
    call: FactoryCall | None = None

    def __str__(self) -> str:
        if self.kind != "function":
            return self.script
        return f"{self.module}:{self.function}{self.call.source if self.call else ''}"


@dataclass(frozen=True)
class FactoryCall:
    """The literal arguments of an app factory's call in the entry, JSON-able for app.json."""

    source: str  # "(...)" as the manifest spells it
    args: tuple[object, ...] = ()
    kwargs: tuple[tuple[str, object], ...] = ()

    def to_json(self) -> dict[str, object]:
        return {"args": list(self.args), "kwargs": dict(self.kwargs)}


def parse_call(text: str) -> FactoryCall:
    """The call "(...)" after an entry's function: literal arguments only (strings, numbers,
    True/False/None, lists and dicts of them). ValueError saying what is wrong otherwise."""
    try:
        node = ast.parse("f" + text, mode="eval").body
    except SyntaxError:
        raise ValueError(f"{text!r} is not a call's argument list") from None
    if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name):
        raise ValueError(f"{text!r} is not a call's argument list")
    try:
        args = tuple(ast.literal_eval(a) for a in node.args)
        kwargs = tuple((k.arg, ast.literal_eval(k.value)) for k in node.keywords if k.arg)
    except ValueError:
        raise ValueError(
            f"the arguments of {text!r} must be literals (strings, numbers, True, False, "
            "None, lists and dicts of them)"
        ) from None
    if len(kwargs) != len(node.keywords):
        raise ValueError(f"{text!r}: ** arguments are not literals")
    if isinstance(node.args[-1] if node.args else None, ast.Starred):
        raise ValueError(f"{text!r}: * arguments are not literals")
    call = FactoryCall(text, args, kwargs)
    if json.loads(json.dumps(call.to_json())) != call.to_json():
        raise ValueError(f"the arguments of {text!r} must be JSON's kinds (no tuples or sets)")
    return call


def has_module(folder: Path, top: str) -> bool:
    return (folder / f"{top}.py").is_file() or (folder / top / "__init__.py").is_file()


def code_dir_of(entry: str, app_dir: Path) -> tuple[Path, str]:
    """(app_dir/src, the entry as found there) for an entry in a src layout's package, else
    (app_dir, entry): "module:function", or a script in a package ("src/pkg/__main__.py",
    "pkg/__main__.py" or "pkg" for a project run with `python -m pkg`)."""
    src = app_dir / "src"
    if ":" in entry:
        top = entry.partition(":")[0].split(".")[0]
        if top and not has_module(app_dir, top) and has_module(src, top):
            return src, entry
        return app_dir, entry
    if MODULE_RE.match(entry) and not entry.endswith(".py"):
        # "pkg" as in `python -m pkg`: its __main__.py (or the module pkg.py), run as -m does.
        rel = entry.replace(".", "/")
        for base in (app_dir, src):
            for script in (f"{rel}/__main__.py", f"{rel}.py"):
                if (base / script).is_file():
                    return base, script
    parts = Path(entry).parts
    if len(parts) > 2 and parts[0] == "src" and (src / parts[1] / "__init__.py").is_file():
        return src, Path(*parts[1:]).as_posix()
    if len(parts) > 1 and not (app_dir / entry).is_file() and (src / entry).is_file():
        return src, entry
    return app_dir, entry


def _script_package(script: Path, code_dir: Path) -> str:
    """The dotted package a script sits in (its folders up to code_dir holding __init__.py),
    "" for a script outside any package."""
    parts: list[str] = []
    folder = script.parent
    while folder != code_dir and (folder / "__init__.py").is_file() and folder.name.isidentifier():
        parts.insert(0, folder.name)
        folder = folder.parent
    return ".".join(parts) if folder == code_dir else ""


def parse_entry(value: str, app_dir: Path, bad: Any, allow_script: bool = True) -> Entry:
    if ":" in value:
        module, _, function = value.partition(":")
        call: FactoryCall | None = None
        name, paren, rest = function.partition("(")
        if paren and name.isidentifier():
            try:
                call = parse_call(paren + rest)
            except ValueError as e:
                raise bad(f"{value!r}: {e}") from None
            function = name
        if not MODULE_RE.match(module) or not function.isidentifier():
            raise bad(f'{value!r} is not "module:function" (nor "module:factory()")')
        if call is not None and not allow_script:
            raise bad(f'{value!r} is not "module:function"')
        top = module.split(".")[0]
        if not has_module(app_dir, top):
            raise bad(
                f"module {top!r} not found in {app_dir} (no {top}.py or {top}/__init__.py "
                f"there, nor in its src/); {OWN_CODE}"
            )
        return Entry("function", module=module, function=function, call=call)
    if not allow_script:
        raise bad(f'{value!r} is not "module:function"')
    if not value.endswith(".py"):
        raise bad(
            f'{value!r} is neither "module:function" nor a .py script (nor a package with a '
            f"__main__.py, as python -m runs); {OWN_CODE}"
        )
    script = (app_dir / value).resolve()
    if not script.is_file():
        raise bad(f"script {value!r} not found in {app_dir}")
    if not script.is_relative_to(app_dir):
        raise bad(f"script {value!r} is outside the app folder")
    return Entry(
        "script", script=str(script.relative_to(app_dir)), package=_script_package(script, app_dir)
    )


def script_entry(pyproject: Path, project: dict[str, Any]) -> str:
    """The entry of a project without [tool.summon]: its one [project.scripts] entry point
    ("pkg.cli:main", extras dropped), as `pip install` then the command would run it."""
    scripts = project.get("scripts")
    scripts = scripts if isinstance(scripts, dict) else {}
    targets = {
        name: value.split("[")[0].strip()
        for name, value in scripts.items()
        if isinstance(value, str) and ":" in value
    }
    if len(targets) == 1:
        return next(iter(targets.values()))
    fix = 'add one with at least entry = "module:function"'
    if targets:
        named = ", ".join(f"{n} = {v!r}" for n, v in sorted(targets.items()))
        raise ManifestError(
            f"{pyproject}: no [tool.summon] table, and [project.scripts] names "
            f"{len(targets)} commands ({named}); {fix} to say which one serves"
        )
    raise ManifestError(f"{pyproject}: no [tool.summon] table and no [project.scripts]; {fix}")
