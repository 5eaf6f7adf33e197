"""Runs inside a built image, under its own interpreter: do the entry and the probe import there?

Started by summon.build.verify as `python3.11 -S -E -c <this file's text> <config>`, where
config is repr() of a dict of plain literals. It imports the runtime modules, the entry
module (or the modules a script entry imports at its top level), the include list, then runs
the probe. Stdlib only, and it imports nothing itself, so that everything loaded is the app's.

Its answer is the last line of its output that starts with MARK, ":summon-verify:", and the
run's token, a random word summon writes on this process's stdin (and nowhere else):
  :summon-verify:TOKEN ok
  :summon-verify:TOKEN missing <module> <importer> <line>   a module the image lacks
  :summon-verify:TOKEN failed <what> <exception>            the entry (or the runtime) raised
  :summon-verify:TOKEN probe <exception>                    the probe raised (not on the host)
fields separated by tabs. The token is read before any of the app's code runs, and stdin is
then /dev/null: the app's own output, which shares stdout, cannot give an answer (an import
that printed a made-up "ok" and exited hid a module the image lacked: rule verify.answer).
Code set on finding it in this process's memory still could: this checks the closure, it
does not hold the app.
"""

import sys

# typing is not imported at run time (it would be loaded into the app's image run); mypy
# reads this.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

MARK = ":summon-verify:"  # starts the answer line (a plain prefix: no app prints it)


def _describe(e: BaseException) -> str:
    text = " ".join(str(e).split())
    if len(text) > 100:  # one line: a long message (a repr of bytes...) is cut
        text = text[:97] + "..."
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def _token() -> str:
    """The run's token from stdin (to its end, at most 256 bytes); stdin is then /dev/null.
    posix: loaded at every start, no import."""
    import posix

    data = b""
    while len(data) < 256:
        try:
            chunk = posix.read(0, 256 - len(data))
        except OSError:
            break
        if not chunk:
            break
        data += chunk
    null = posix.open("/dev/null", posix.O_RDONLY)
    posix.dup2(null, 0)
    posix.close(null)
    return data.decode("ascii", "replace").strip()


def _sayer(token: str) -> "Callable[..., None]":
    head = MARK + token

    def say(*fields: object) -> None:
        sys.stdout.flush()
        sys.stdout.write("\n" + "\t".join([head, *(str(f) for f in fields)]) + "\n")
        sys.stdout.flush()

    return say


def _importer(e: BaseException, label: str, line: int) -> "tuple[str, int]":
    """The module (and line) whose import statement failed: the innermost frame that is
    neither the import machinery nor this script; this script's own label if none is."""
    tb = e.__traceback__
    found = (label, line)
    while tb is not None:
        code = tb.tb_frame.f_code
        if not code.co_filename.startswith("<"):
            name = tb.tb_frame.f_globals.get("__name__") or code.co_filename
            found = (f"{name} ({code.co_filename})", tb.tb_lineno)
        tb = tb.tb_next
    return found


def _step(
    say: "Callable[..., None]", what: str, label: str, line: int, run: "Callable[[], object]"
) -> bool:
    try:
        run()
    except ModuleNotFoundError as e:
        importer, at = _importer(e, label, line)
        say("missing", e.name or "?", importer, at)
        return False
    except BaseException as e:
        if isinstance(e, KeyboardInterrupt):
            raise
        if what == "probe":
            say("probe", _describe(e))
        else:
            say("failed", what, _describe(e))
        return False
    return True


def main() -> None:
    say = _sayer(_token())  # before any of the app's code
    cfg = eval(sys.argv[1], {"__builtins__": {}}, {})
    root = cfg["root"].rstrip("/")
    # sys.path[0] is '' for -c: the image's own path goes there instead, as init puts it.
    sys.path[0:1] = [root + p for p in cfg["path"]]
    if cfg["path"]:
        # In the app's folder, as init runs it: StaticFiles(directory="static"), a file
        # opened by a relative name at import. posix: loaded at every start, no import.
        import posix

        try:
            posix.chdir(root + cfg["path"][0])
        except OSError:
            pass

    def importing(name: str) -> "Callable[[], object]":
        return lambda: __import__(name)

    for name in cfg["runtime"]:
        if not _step(say, "the runtime", "summon's runtime", 0, importing(name)):
            return
    entry = cfg["entry"]
    if entry["kind"] == "function":
        if not _step(say, "the entry", "the entry", 0, importing(entry["module"])):
            return
        module = sys.modules[entry["module"]]
        if not callable(getattr(module, entry["function"], None)):
            say("failed", "the entry", f"{entry['module']} has no function {entry['function']}")
            return
    else:
        for name, line in entry["imports"]:
            if not _step(say, "the entry", entry["script"], line, importing(name)):
                return
    for name in cfg["include"]:
        if not _step(say, "the include list", "include = [...]", 0, importing(name)):
            return
    probe = cfg["probe"]
    if probe:
        module_name, _, function = probe.partition(":")

        def run_probe() -> None:
            __import__(module_name)
            result = getattr(sys.modules[module_name], function)()
            if type(result).__name__ == "coroutine":
                import asyncio

                asyncio.run(result)

        if not _step(say, "probe", probe, 0, run_probe):
            return
    say("ok")


if __name__ == "__main__":
    main()
    # Threads the app started must not keep this run alive, nor atexit hooks run its code.
    import os

    os._exit(0)
