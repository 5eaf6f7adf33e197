"""Run by `summon build` under the image's interpreter: what kind of callable is the entry?

Usage: python -S -E -B _interface_probe.py CONFIG OUT. CONFIG is JSON {"search_path": [...],
"module": M, "attr": A}; OUT receives JSON {"kind": K, "why": W}, where K is
- "wsgi": a plain callable taking (environ, start_response);
- "asgi": an async callable taking (scope, receive, send) (ASGI 3), a function or an object
  whose __call__ is async; or an object whose plain __call__ needs exactly three arguments
  (no WSGI server passes three), returning what the server awaits;
- "function": an entry function for sure: it asks for devices (summon.devices annotations)
  or takes no parameters;
- "other": a function of another shape, or a callable taking only (*args, **kwargs) as a
  command-line entry point does (click, typer): the runtime calls it as an entry function
  (and names the parameter it cannot fill), the manifest's args on sys.argv;
- "unknown": a callable object whose signature says neither WSGI nor ASGI;
- "error": the module does not import or has no such callable (the closure trace that
  follows reports it, with the traceback).
With "call" in CONFIG ({"args": [...], "kwargs": {...}}, the entry "module:create_app()"), the
callable is an app factory: it is called so, and what it returns is classified instead.
W says, in a few words, what the signature looked like, for the build's messages. "unfilled"
lists the parameters of an "other" function that are neither devices nor defaulted, which
the runtime could not fill. "stack"
is whether a parameter asks for the Stack device: an entry function without one opens its
own listeners (uvicorn.run in main), which host-made listeners handed to the Stack would
never reach.

It imports the app as the closure trace does, and may use inspect: this runs at build time
only, never in an image. Stdlib only (the image's interpreter has nothing else).
"""

import inspect
import json
import sys

# The runtime's device names (summon.runtime.injection.DEVICE_TYPES), set by main() from the
# build's config: one list for both.
DEVICE_TYPES: "tuple[str, ...]" = ()


def is_device(annotation: object, names: "tuple[str, ...] | None" = None) -> bool:
    """The same rule as the runtime's (init.device_type): a summon.devices class, or a
    string whose last dotted part names one (of `names`, by default any device's)."""
    names = DEVICE_TYPES if names is None else names
    if isinstance(annotation, str):
        return annotation.strip().strip("'\"").rpartition(".")[2] in names
    devices = sys.modules.get("summon.devices")
    if isinstance(annotation, type) and devices is not None:
        return any(issubclass(annotation, getattr(devices, name)) for name in names)
    return False


def asks_stack(obj: object) -> bool:
    """Whether the callable has a parameter annotated as the Stack device."""
    try:
        params = inspect.signature(obj).parameters.values()  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
    return any(is_device(p.annotation, ("Stack",)) for p in params)


def shape(params: "list[inspect.Parameter]") -> str:
    names = ", ".join(p.name for p in params)
    return f"({names})"


def classify(obj: object) -> "tuple[str, str]":
    if not callable(obj):
        return "error", f"is a {type(obj).__name__}, not a callable"
    if inspect.isclass(obj):
        return "unknown", f"is the class {obj.__name__} (an app object is needed, not its class)"
    inner = inspect.unwrap(obj)
    is_function = inspect.isfunction(inner) or inspect.ismethod(inner)
    if is_function:
        is_async = inspect.iscoroutinefunction(inner)
    else:
        call = type(obj).__call__
        is_async = inspect.iscoroutinefunction(inspect.unwrap(call))
    if is_function:
        what = "an async function" if is_async else "a function"
    else:
        call_kind = "an async __call__" if is_async else "a __call__"
        what = f"an object of class {type(obj).__name__} with {call_kind}"
    try:
        params = list(inspect.signature(obj).parameters.values())
    except (TypeError, ValueError):
        return ("other" if is_function else "unknown"), f"is {what} whose signature is unknown"
    if any(is_device(p.annotation) for p in params):
        return "function", f"is {what} that asks for devices {shape(params)}"
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    varargs = any(p.kind is p.VAR_POSITIONAL for p in params)
    required = [
        p
        for p in params
        if p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]
    required_keywords = [p for p in required if p.kind is p.KEYWORD_ONLY]
    if not is_async and not positional and varargs:
        # (*args, **kwargs): a command-line entry point's shape (a click group, a typer app,
        # [project.scripts]), which reads sys.argv, far more often than a WSGI app's.
        return "other", f"is {what} taking {shape(params)}, as a command-line entry point does"
    if not required_keywords:
        if is_async and len(required) <= 3 and (len(positional) >= 3 or varargs):
            return "asgi", f"is {what} taking {shape(params)}"
        if not is_async and len(required) <= 2 and (len(positional) >= 2 or varargs):
            return "wsgi", f"is {what} taking {shape(params)}"
        if not is_function and not is_async and len(required) == len(positional) == 3:
            # No WSGI server calls with three arguments; ASGI 3's does, and awaits what a
            # plain __call__ returns (Emmett's App hands back its handler's coroutine).
            return "asgi", f"is {what} taking {shape(params)}, three arguments as ASGI's"
    if is_function:
        if not params:
            return "function", f"is {what} without parameters"
        return "other", f"is {what} taking {shape(params)}"
    return "unknown", f"is {what} taking {shape(params)}"


def could_serve(obj: object) -> bool:
    """Whether a callable could take WSGI's two arguments or ASGI's three."""
    try:
        params = list(inspect.signature(obj).parameters.values())  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return True  # unknown: the build asks for interface
    if inspect.isclass(obj):
        return False
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) >= 2 or any(p.kind is p.VAR_POSITIONAL for p in params)


def unfilled(obj: object) -> "list[str]":
    """The parameters the runtime cannot fill: required, and not asking for a device."""
    try:
        params = inspect.signature(obj).parameters.values()  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return []
    return [
        p.name
        for p in params
        if p.default is p.empty
        and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        and not is_device(p.annotation)
    ]


def main() -> None:
    config_file, out_file = sys.argv[1], sys.argv[2]
    with open(config_file) as f:
        cfg = json.load(f)
    global DEVICE_TYPES
    DEVICE_TYPES = tuple(cfg["device_types"])
    # As the image: the app's path first, then the stdlib (sys.path[0] is this script's folder).
    sys.path[:] = [p for p in cfg["search_path"] if p] + sys.path[1:]
    try:
        __import__(cfg["module"])
        obj = getattr(sys.modules[cfg["module"]], cfg["attr"], None)
        stack = False
        missing: list[str] = []
        call = cfg.get("call")
        if obj is None:
            result = ("error", f"is missing from module {cfg['module']!r}")
        elif call is not None:
            if not callable(obj):
                result = ("error", f"is a {type(obj).__name__}, not a factory to call")
            else:
                try:
                    app = obj(*call["args"], **call["kwargs"])
                except BaseException as e:
                    result = ("error", f"fails when called: {type(e).__name__}: {e}")
                else:
                    kind, why = classify(app)
                    if kind == "unknown" and not could_serve(app):
                        kind = "other"  # a server's own app object: aiohttp's, Tornado's
                    result = (kind, f"returns {_what(app)}, which {why}")
        else:
            result = classify(obj)
            stack = callable(obj) and asks_stack(obj)
            if result[0] == "other":
                missing = unfilled(obj)
    except BaseException as e:  # the app's own failure at import: the trace reports it
        result = ("error", f"does not import: {type(e).__name__}: {e}")
    with open(out_file, "w") as f:
        json.dump({"kind": result[0], "why": result[1], "stack": stack, "unfilled": missing}, f)


def _what(obj: object) -> str:
    text = repr(obj)
    return text if len(text) <= 60 else f"an object of class {type(obj).__name__}"


if __name__ == "__main__":
    main()
