"""The image's init (PID 1): read app.json, set the process up, build devices, run the entry.

What it does, in order:
1. As PID 1 with no /proc (a VM), mount proc, devtmpfs on /dev and tmpfs on /tmp. (In the
   sandbox, runc mounts them and seccomp denies mount.)
2. Read <SUMMON_ROOT>/etc/summon/app.json. Image paths in it are joined to SUMMON_ROOT.
3. Put app.json "path" in front of sys.path and work in its first folder (the app's, /app);
   set app.json "env" where the environment does not already (the environment wins); set
   sys.argv to [entry, *args], where args are the arguments given to boot.py if any, else
   app.json "args".
4. Run the entry:
   - a script runs as __main__, as `python script.py` would run it;
   - a function is called with one device per parameter, chosen by its annotation (see
     Devices); a coroutine function runs under asyncio.run;
   - a WSGI or ASGI app (kind "wsgi" or "asgi") is served by summon.runtime.http on the
     image's first TCP port, over the Stack device (docs/http.md).
   On the way the seal closes (summon.runtime.seal, docs/sealing.md), unless app.json says
   "off" or this is the unix target's host process: after the probe's warm-up, at the app's
   ready() if its code calls it, else when its Stack device first listens, before a script's
   first line, or before an entry function that asks for no Stack is called.
5. Close the devices that hold something (KV_RW stores: the Git view completed, the lock
   released), however the app ended; flush stdout and stderr and return the exit status.

Exit status: the function's return value (None is 0, an int is itself), or the code of a
SystemExit (as sys.exit treats it); 1 with the traceback on stderr if the app raises (then a
hint line if the cause is a module missing from the image, or a fork or exec the sandbox
denied); 2 with one "summon: ..." line for a mistake in how the app asks for devices or in a
SUMMON_* variable; 1 with one such line for a broken image (unreadable app.json). Before the
app has started, a shutdown signal ends the process with status 0.

Signals: SIGTERM and SIGINT ask for a clean shutdown: finally blocks run, and the exit status
is 0 unless the app sets one. For an async entry the main task is cancelled; the
CancelledError that ends it counts as a clean exit, and an app that catches it may return a
status. For a sync entry or a script, SIGINT is Python's own KeyboardInterrupt, so that an
event loop the app runs (trio, anyio, asyncio.run) installs its Ctrl-C handling as it would
bare; SIGTERM goes to that handling when there is one (trio stops at its next checkpoint,
asyncio.run cancels its main task), and otherwise raises SystemExit(0) wherever the app is,
which it may catch. An app that ends in the KeyboardInterrupt or SystemExit a signal raised
(alone or in exception groups) exits with 0. A second SIGTERM during the shutdown is
ignored. In a VM, SIGINT is the host's stop request (qemu.md) and means SIGTERM. (As PID 1,
Python would otherwise ignore SIGTERM altogether: the kernel drops signals PID 1 has no
handler for.)
"""

from __future__ import annotations

import os
import sys

from summon.runtime import config as app_config
from summon.runtime.config import APP_JSON, Fail, host_path
from summon.runtime.injection import Devices, resolve_devices

# Not from typing: importing typing costs ~9 ms at every start.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import signal as _signal
else:
    # The C module itself: `signal` wraps it in enums, and enum takes ~6 ms to import.
    import _signal

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence
    from types import FrameType, TracebackType
    from typing import Any

    from summon.devices import Console, Stack
    from summon.runtime.config import AppConfig
    from summon.runtime.seal import Sealer

# (source, target, fstype, flags, options, present if): what a VM's init mounts.
# Flags from <sys/mount.h>: MS_RDONLY 1, MS_NOSUID 2, MS_NODEV 4, MS_NOEXEC 8. /proc is
# read-only, as in the sandbox: no process may write its own code pages through
# /proc/self/mem (the guest kernel, 6.1, has no proc_mem.force_override).
EARLY_MOUNTS = (
    (b"proc", "/proc", b"proc", 1 | 2 | 4 | 8, None, "/proc/self"),
    (b"devtmpfs", "/dev", b"devtmpfs", 2 | 8, b"mode=0755", "/dev/null"),
    (b"tmpfs", "/tmp", b"tmpfs", 2 | 4, b"mode=1777", None),
    # POSIX semaphores and shared memory (multiprocessing's Lock and Value), as in the sandbox.
    (b"tmpfs", "/dev/shm", b"tmpfs", 2 | 4 | 8, b"mode=1777", None),
)

_RUNTIME_DIR = os.path.dirname(__file__)
_stopping = False  # a shutdown signal has been received


def main() -> int:
    """Run the image's app; return its exit status (a VM's init powers the VM off instead)."""
    status, failure = 1, ""  # the runtime's own one-line reason, for a VM's host
    try:
        status = run(sys.argv[1:])
    except Fail as e:
        _say(failure := str(e))
        status = e.status
    except KeyboardInterrupt:  # SIGINT before the app started: a clean stop, as SIGTERM's
        status = 0
    finally:
        _flush()
        if (seal := sys.modules.get("summon.runtime.seal")) is not None:
            seal.exiting(status)  # sealed: the instance ends with it, before finalization
        vm = sys.modules.get("summon.runtime.vm")
        if vm is not None and vm.active:
            vm.finish(status, failure)  # does not return: both leave on the control port
    return status


def run(argv: list[str]) -> int:
    """Everything main() does, raising Fail for what it reports in one line."""
    # From the first moment: as PID 1 a SIGTERM without a handler would be dropped.
    _signal.signal(_signal.SIGTERM, _stop_sync)
    # Python's own: an event loop installs its Ctrl-C handling only over this one.
    _signal.signal(_signal.SIGINT, _signal.default_int_handler)
    try:
        return _run(argv)
    finally:
        # The app is done: a late signal must not cut the exit short with a SystemExit.
        _signal.signal(_signal.SIGTERM, _signal.SIG_IGN)
        _signal.signal(_signal.SIGINT, _signal.SIG_IGN)


def _run(argv: list[str]) -> int:
    root = os.environ.get("SUMMON_ROOT") or "/"
    if os.getpid() == 1:
        mount_early_filesystems(root)
        from summon.runtime import vm  # imports nothing more unless this is a VM's init

        if vm.is_vm(root):
            try:
                vm.setup()
            except vm.SetupError as e:
                raise Fail(str(e), 1) from None
            argv = vm.args if vm.args is not None else argv  # the run's, from run.json
            # SIGINT here is the host's stop request (Ctrl-C on the serial line, sent again
            # each second until the guest is gone): SIGTERM's meaning, repeats ignored.
            _signal.signal(_signal.SIGINT, _stop_sync)
    try:
        cfg = app_config.load(host_path(root, APP_JSON))
    except app_config.ConfigError as e:
        raise Fail(str(e), 1) from None
    if os.environ.get("SUMMON_STATS") or _in_vm():
        # The host asks for the app's figures with SIGQUIT (summon.runtime.stats).
        _signal.signal(_signal.SIGQUIT, _report_stats)

    sys.path[0:0] = [host_path(root, p) for p in cfg.path]
    if cfg.path:
        # The app's folder, as `python app.py` in the project folder has it: relative paths
        # (Bottle's ./views, a data file opened by its name) find what the build put there.
        try:
            os.chdir(host_path(root, cfg.path[0]))
        except OSError:
            pass
    for key, value in cfg.env.items():
        os.environ.setdefault(key, value)
    from summon.runtime import localzone  # TZ, or TZDIR for a TZ the app sets itself

    localzone.hold(sys.path, _say)
    if root == "/":  # the image's own libraries, found with no ldconfig (findlib.py)
        from summon.runtime import findlib

        findlib.install()
    args = argv or cfg.args
    sealer = make_sealer(cfg, root)
    stdout = sys.stdout
    if stdout is not None and hasattr(stdout, "reconfigure"):
        # A pipe would hold prints back until exit; a server's log must show as it happens.
        stdout.reconfigure(line_buffering=True)
    if cfg.entry_kind == "script":
        script = host_path(root, cfg.entry_path)
        sys.argv = [script, *args]
        if sealer is not None:
            warm_up(cfg.probe, cfg.seal_imports)
        return run_script(
            script, sealer, networked=cfg.network != "none", package=cfg.entry_package
        )
    sys.argv = [cfg.entry, *args]
    if cfg.entry_kind == "wsgi" or cfg.entry_kind == "asgi":
        return run_http(cfg, root, sealer)
    return run_function(cfg, root, sealer)


def make_sealer(cfg: AppConfig, root: str) -> Sealer | None:
    """The seal of this instance, made ready to close; None if it is not sealed.

    The unix target runs the image's files as a host process (root is not /): never sealed.
    The image's module folders are sys.path as it is now, before any app code ran.
    """
    if cfg.seal == "off" or root != "/":
        return None
    from summon.runtime import seal

    sealer = seal.Sealer(cfg, tuple(sys.path), _say)
    seal.activate(sealer)
    sealer.learn_early()
    return sealer


def warm_up(probe: str, imports: list[str] | tuple[str, ...] = ()) -> None:
    """Import `imports` and call the probe ("module:function") before the seal.

    What they build lazily (dataclasses and namedtuples at import, templates...) is then
    built before the seal, which would refuse it after (docs/sealing.md). A module that does
    not import is left for the app to fail on as it would; a failing probe is said.
    """
    for name in imports:
        try:
            __import__(name)
        except Exception:
            pass
    if not probe:
        return
    module, _, function = probe.partition(":")
    try:
        __import__(module)
        getattr(sys.modules[module], function)()
    except Exception as e:
        reason = str(e)
        reason = reason if len(reason) <= 120 else reason[:117] + "..."
        _say(
            f"warm-up: the probe {probe} raised {type(e).__name__}: {reason}; the seal "
            "closes without the rest of its warm-up"
        )


def _in_vm() -> bool:
    vm = sys.modules.get("summon.runtime.vm")
    return vm is not None and bool(vm.active)


def _report_stats(signum: int, frame: FrameType | None) -> None:
    from summon.runtime import stats  # only once the host asks: nothing costs before

    stats.report(os.environ.get("SUMMON_STATS"), _in_vm())


def mount_early_filesystems(root: str) -> None:
    """Mount /proc, /dev and /tmp unless /proc is there already (only a VM's init must)."""
    if os.path.exists(host_path(root, "/proc/self")):
        return
    import ctypes  # only here: ctypes and libffi cost every other start

    libc = ctypes.CDLL(None, use_errno=True)
    mount = libc.mount
    mount.argtypes = (
        ctypes.c_char_p,
        ctypes.c_char_p,
        ctypes.c_char_p,
        ctypes.c_ulong,
        ctypes.c_char_p,
    )
    mount.restype = ctypes.c_int
    for source, target, fstype, flags, options, present in EARLY_MOUNTS:
        if present and os.path.exists(host_path(root, present)):
            continue
        path = host_path(root, target).encode()
        if not os.path.isdir(path):
            try:
                os.mkdir(path)  # /dev/shm: devtmpfs has none
            except OSError:
                pass  # the mount below says why
        if mount(source, path, fstype, flags, options) != 0:
            reason = os.strerror(ctypes.get_errno())
            _say(f"cannot mount {fstype.decode()} on {target}: {reason}; going on without it")


def run_script(
    path: str, sealer: Sealer | None = None, networked: bool = True, package: str = ""
) -> int:
    """Run the script at `path` as __main__ and return its status. With a sealer: sealed at
    its first bind() or connect() of an internet socket if networked, else before its first
    line (a batch job: no server or client to build first). package: the one the script
    sits in (pkg for pkg/__main__.py), which `python -m pkg` imports first and runs it in,
    so that its relative imports (from .app import app) work."""
    try:
        with open(path, "rb") as f:
            source = f.read()
    except OSError as e:
        raise Fail(f"cannot read the entry script {path}: {e.strerror}", 1) from None
    from importlib.machinery import SourceFileLoader

    module = type(sys)("__main__")
    module.__file__ = path
    # As `python app.py` has it: pkg_resources reads "__main__:static" through the loader.
    module.__loader__ = SourceFileLoader("__main__", path)
    if package:
        module.__package__ = package
        try:
            __import__(package)
        except BaseException as e:
            return _status_of_exception(e)
    # Classes the script defines must be found as __main__.X (pickle, repr, warnings).
    sys.modules["__main__"] = module
    try:
        code = compile(source, path, "exec")
        if sealer is not None and networked:
            sealer.watch_sockets()  # sealed before the first byte from the network
        elif sealer is not None:
            sealer.reached("the script's start")
        exec(code, module.__dict__)
    except BaseException as e:
        return _status_of_exception(e)
    return 0


def run_function(cfg: AppConfig, root: str, sealer: Sealer | None = None) -> int:
    """Import the entry module, call the entry function with its devices, return the status.

    With a sealer: the probe warms the app up after the import; the seal closes when the
    Stack device listens (or the app calls ready()), or before the call if it asks for none.
    """
    try:
        __import__(cfg.entry_module)
        module = sys.modules[cfg.entry_module]
    except BaseException as e:
        return _status_of_exception(e)
    fn = getattr(module, cfg.entry_function, None)
    if fn is None or not callable(fn):
        raise Fail(
            f"entry {cfg.entry}: module {cfg.entry_module!r} has no function "
            f"{cfg.entry_function!r}; fix entry in {cfg.manifest} and rebuild"
        )
    if sealer is not None:
        warm_up(cfg.probe)
    devices = Devices(cfg, root)
    try:
        args, kwargs, is_async = resolve_devices(fn, devices, cfg.entry)
        if not devices.made("Stack") and os.environ.get("LISTEN_FDS", "0") != "0":
            # The sandbox handed the -p ports to the entry's Stack, which it never asks for:
            # a server of its own (uvicorn.run in main) would never see a connection.
            _say(
                f"entry {cfg.entry} asks for no Stack device, so the ports this run was given "
                "(-p) reach nothing it listens on: an entry that starts its own server "
                '(uvicorn.run, app.run) is a script: entry = "run.py" making that call, '
                'or point entry at the app object (entry = "module:app")'
            )
        if sealer is not None and not devices.made("Stack"):
            sealer.reached("the entry's call")
        try:
            if is_async:
                result = run_async(lambda: fn(*args, **kwargs), devices.starts)
            else:
                result = fn(*args, **kwargs)
                if hasattr(result, "__await__"):  # a plain function that returned a coroutine
                    result = run_async(lambda: result, devices.starts)
        except BaseException as e:
            return _status_of_exception(e)
        if callable(result) and not isinstance(result, type):
            # Flask's create_app(), named as the entry: it returns the app and ends.
            raise Fail(
                f"entry {cfg.entry} returned {_short(result)} and ended, as an app factory "
                f"does: write its call in {cfg.manifest} and rebuild, "
                f'entry = "{cfg.entry}()" (with the arguments it takes), and the runtime '
                "serves the WSGI or ASGI app it returns"
            )
        return exit_status(result)
    finally:
        close_devices(devices)


def _short(obj: object) -> str:
    try:
        text = repr(obj)
    except Exception:
        text = ""
    return text if 0 < len(text) <= 60 else f"an object of class {type(obj).__name__}"


def run_http(cfg: AppConfig, root: str, sealer: Sealer | None = None) -> int:
    """Import the entry module and serve its WSGI or ASGI app until a shutdown signal.

    With a sealer: the probe warms the app up after the import; the seal closes when the
    runtime's server listens on the Stack device (or the app calls ready()).
    """
    kind = cfg.entry_kind.upper()
    try:
        __import__(cfg.entry_module)
        module = sys.modules[cfg.entry_module]
    except BaseException as e:
        return _status_of_exception(e)
    app = getattr(module, cfg.entry_function, None)
    if app is None or not callable(app):
        raise Fail(
            f"entry {cfg.entry}: module {cfg.entry_module!r} has no {kind} app named "
            f"{cfg.entry_function!r}; fix entry in {cfg.manifest} and rebuild"
        )
    if cfg.entry_call is not None:  # an app factory: it returns the app
        args, kwargs = cfg.entry_call
        try:
            app = app(*args, **kwargs)
        except BaseException as e:
            return _status_of_exception(e)
        if not callable(app):
            raise Fail(f"entry {cfg.entry} returned {_short(app)}, not a {kind} app")
    if cfg.network not in ("socket", "direct"):
        raise Fail(
            f"entry {cfg.entry} is a {kind} app, served over the network, but the image was "
            f'built with network = {cfg.network!r}; set network = "socket" in {cfg.manifest}'
        )
    port = http_port(cfg)
    if sealer is not None:
        warm_up(cfg.probe)
    from summon.runtime.http.settings import Settings

    try:
        settings = Settings.from_environ(os.environ)
    except ValueError as e:
        raise Fail(str(e)) from None
    devices = Devices(cfg, root)
    stack: Stack = devices.get("Stack", "stack")  # type: ignore[assignment]
    console: Console = devices.get("Console", "log")  # type: ignore[assignment]
    from summon.runtime.http.server import serve

    kind, label = cfg.entry_kind, cfg.entry
    try:
        warm = cfg.warm_up if sealer is not None else []  # what the seal needs built first
        result = run_async(
            lambda: serve(app, kind, stack, port, settings, console.write, label, warm),
            devices.starts,
        )
        return exit_status(result)
    except BaseException as e:
        return _status_of_exception(e)
    finally:
        close_devices(devices)


def close_devices(devices: Devices) -> None:
    """Close what the app's devices hold (its stores, flushed), on every way out: a clean
    stop (SIGTERM) and the app's own end alike. A late signal must not cut this short."""
    _signal.signal(_signal.SIGTERM, _signal.SIG_IGN)
    _signal.signal(_signal.SIGINT, _signal.SIG_IGN)
    for line in devices.close():
        _say(line)


def http_port(cfg: AppConfig) -> int:
    """The port a WSGI/ASGI app is served on: the first TCP port of the manifest's ports."""
    for spec in cfg.ports:
        number, _, proto = spec.partition("/")
        if (proto or "tcp") == "tcp" and number.isdigit():
            return int(number)
    raise Fail(
        f"entry {cfg.entry} is a {cfg.entry_kind.upper()} app, but the image lists no TCP port "
        f"to serve it on; add ports = [8000] to {cfg.manifest} and rebuild"
    )


def run_async(
    make: Callable[[], Any], starts: Sequence[Callable[[], Awaitable[None]]] = ()
) -> object:
    """Run the awaitable `make()` returns under asyncio.run, stopping it on SIGTERM/SIGINT;
    each of `starts` is awaited first, on the same loop."""
    import asyncio

    stopping = False

    async def supervise() -> object:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()

        def stop() -> None:
            nonlocal stopping
            if not stopping and task is not None:
                stopping = True
                task.cancel()

        for signal in (_signal.SIGTERM, _signal.SIGINT):
            loop.add_signal_handler(signal, stop)
        loop.set_exception_handler(_loop_exception)
        try:
            for start in starts:
                await start()
            return await make()
        except asyncio.CancelledError:
            if stopping:
                return None
            raise

    return asyncio.run(supervise())


def _loop_exception(loop: object, context: dict[str, object]) -> None:
    """asyncio's report of an error nobody awaited, plus the missing-module hint."""
    default = getattr(loop, "default_exception_handler", None)
    if default is not None:
        default(context)
    exc = context.get("exception")
    if isinstance(exc, BaseException):
        hint = hint_for(exc)
        if hint:
            _say(hint)


def _stop_sync(signum: int, frame: FrameType | None) -> None:
    """SIGTERM: the Ctrl-C handling of the app's event loop if it has one (an exception
    raised at an arbitrary point inside trio's scheduler breaks it), else SystemExit(0)."""
    global _stopping
    if _stopping:
        return
    _stopping = True
    handler = _signal.getsignal(_signal.SIGINT)
    if callable(handler) and handler not in (_signal.default_int_handler, _stop_sync):
        handler(_signal.SIGINT, frame)
        return
    raise SystemExit(0)


def _stopped_by_signal(exc: BaseException) -> bool:
    """Whether exc is what a shutdown signal raised: a KeyboardInterrupt, or a SystemExit
    while stopping, alone or as the only kind of thing in (nested) exception groups."""
    if isinstance(exc, BaseExceptionGroup):
        return all(_stopped_by_signal(e) for e in exc.exceptions)
    return isinstance(exc, KeyboardInterrupt) or (isinstance(exc, SystemExit) and _stopping)


def exit_status(code: object) -> int:
    """The process status for a return value or SystemExit code, as sys.exit reads it."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    _flush()
    print(code, file=sys.stderr)
    return 1


def _status_of_exception(exc: BaseException) -> int:
    if not isinstance(exc, SystemExit) and _stopped_by_signal(exc):
        return 0
    if isinstance(exc, SystemExit):
        status = exit_status(exc.code)
        # A server that fails to fork logs the error itself, then exits from its except
        # block: the denied fork is the SystemExit's context.
        hint = hint_for(exc) if status else None
        if hint:
            _say(hint)
        return status
    report(exc)
    return 1


def report(exc: BaseException) -> None:
    """Print the traceback of what the app raised, without the runtime's own frames."""
    tb: TracebackType | None = exc.__traceback__
    asyncio_module = sys.modules.get("asyncio")
    asyncio_dir = os.path.dirname(asyncio_module.__file__ or "") if asyncio_module else None
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if not (
            filename.startswith(_RUNTIME_DIR)
            or (asyncio_dir is not None and filename.startswith(asyncio_dir))
        ):
            break
        tb = tb.tb_next
    _flush()  # the app's own output first, in order
    exc = exc.with_traceback(tb)  # the default hook prints exc.__traceback__, whatever tb
    if sys.excepthook is sys.__excepthook__:
        # The traceback module's printer, not the C one: both parse parts of each line to
        # draw the ^^^ markers, but the C one's parse reads as a compile of the app's file,
        # which a sealed instance would say it refused; the module's is ast.parse.
        try:
            import traceback  # always in an image (graph.ALWAYS_INCLUDE)
        except BaseException:  # the C printer is the fallback
            sys.excepthook(type(exc), exc, tb)
        else:
            traceback.print_exception(type(exc), exc, tb)
    else:
        sys.excepthook(type(exc), exc, tb)  # the app's own
    hint = hint_for(exc)
    if hint:
        _say(hint)


def hint_for(exc: BaseException) -> str | None:
    """The one-line hint for what is (behind) `exc`, if summon knows a better way."""
    from summon.runtime import hints  # only on this error path

    return (
        hints.missing_module_hint(exc)
        or hints.sandbox_hint(exc)
        or hints.environ_hint(exc)
        or hints.volume_hint(exc)
    )


def _say(line: str) -> None:
    """One line from the runtime itself, on stderr."""
    _flush()
    try:
        sys.stderr.write(f"summon: {line}\n")
        sys.stderr.flush()
    except (OSError, ValueError, AttributeError):
        pass


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError, AttributeError):
            pass
