"""Devices for an entry function, chosen by its parameters' annotations, built on demand.

An entry asks for devices by type (summon.devices: Console, Clock, Random, Stack, KV_RO...);
resolve_devices reads the function's code object and annotations (inspect would cost ~10 ms
at every start), and Devices builds the implementation the image and target call for, each
at most once. Mistakes in how the app asks are one line (Fail, status 2).
"""

from __future__ import annotations

import os
import sys

from summon.runtime.config import Fail, host_path

# Not from typing: importing typing costs ~9 ms at every start.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from summon.devices import Stack
    from summon.runtime.config import AppConfig

DEVICE_TYPES = ("Console", "Clock", "Random", "Stack", "KV_RO", "KV_RW", "TLS", "Secrets")
# Where a target puts the run's secrets (a read-only tmpfs, or a VM's initramfs) unless
# SUMMON_SECRETS says otherwise (the unix target's private folder).
SECRETS_PATH = "/run/secrets"
# Set by the target: the volumes it mounted, "PATH" or "PATH=HOST_FOLDER" (unix), ':'-separated
# (summon.targets.base.VOLUMES_ENV). A store whose volume is not there is not mounted.
VOLUMES_ENV = "SUMMON_VOLUMES"
CO_COROUTINE = 0x100  # inspect.CO_COROUTINE, without importing inspect


def resolve_devices(
    fn: Callable[..., object], devices: Devices, entry: str
) -> tuple[list[object], dict[str, object], bool]:
    """(positional args, keyword args, is a coroutine function) to call the entry `fn` with.

    Reads the code object and __annotations__ rather than inspect.signature: inspect costs
    about 10 ms to import. Annotations may be strings (from __future__ import annotations);
    the last dotted component is matched against the device names. A parameter that is not
    a device may stay only if it has a default.
    """
    target: object = fn
    while hasattr(target, "__wrapped__"):  # functools.wraps: the signature is the inner one
        target = target.__wrapped__
    code = getattr(target, "__code__", None)
    if code is None:
        mro = type(target).__mro__
        call = next((vars(k)["__call__"] for k in mro if "__call__" in vars(k)), None)
        call_code = getattr(call, "__code__", None)
        if (
            call_code is not None
            and call_code.co_argcount == 1  # self alone: (*args, **kwargs) at most
            and not call_code.co_kwonlyargcount
            and not call_code.co_flags & CO_COROUTINE
        ):
            # A command-line entry point (a click group, a typer app, as [project.scripts]
            # names one): called with nothing, it reads the manifest's args from sys.argv.
            return [], {}, False
        raise Fail(f"entry {entry} is not a function; point entry at a def or async def")
    skip = 1 if hasattr(target, "__func__") else 0  # a bound method's self
    npos = code.co_argcount
    names = code.co_varnames[: npos + code.co_kwonlyargcount]
    annotations: dict[str, object] = getattr(target, "__annotations__", None) or {}
    defaults: tuple[object, ...] = getattr(target, "__defaults__", None) or ()
    kwdefaults: dict[str, object] = getattr(target, "__kwdefaults__", None) or {}
    first_default = npos - len(defaults)

    args: list[object] = []
    kwargs: dict[str, object] = {}
    for i, name in enumerate(names):
        if i < skip:
            continue
        positional = i < npos
        annotation = annotations.get(name)
        kind = device_type(annotation)
        if kind is not None:
            value = devices.get(kind, name)
        elif positional and i >= first_default:
            value = defaults[i - first_default]
        elif not positional and name in kwdefaults:
            continue
        elif annotation is None:
            raise Fail(
                f"parameter {name!r} of {entry} has no annotation; annotate it with one of "
                f"{', '.join(DEVICE_TYPES)} (from summon.devices), or give it a default"
            )
        else:
            raise Fail(
                f"parameter {name!r} of {entry} is annotated {_describe(annotation)}, which is "
                f"not a device; use one of {', '.join(DEVICE_TYPES)} (from summon.devices)"
            )
        if positional:
            args.append(value)
        else:
            kwargs[name] = value
    is_async = bool(code.co_flags & CO_COROUTINE)
    return args, kwargs, is_async


def device_type(annotation: object) -> str | None:
    """The device name an annotation asks for ("Stack", "KV_RO"...), or None."""
    if isinstance(annotation, str):
        # Quoted under `from __future__ import annotations`, `x: "Stack"` reads "'Stack'".
        name = annotation.strip().strip("'\"").rpartition(".")[2]
        return name if name in DEVICE_TYPES else None
    if isinstance(annotation, type):
        from summon import devices

        for name in DEVICE_TYPES:
            if issubclass(annotation, getattr(devices, name)):
                return name
    return None


def _describe(annotation: object) -> str:
    if isinstance(annotation, str):
        return repr(annotation.strip().strip("'\""))
    return repr(getattr(annotation, "__qualname__", annotation))


class Devices:
    """Builds the devices an entry asks for, each at most once (KV_RO once per folder, KV_RW
    once per store), and closes what must be closed (the stores) when the app is done."""

    def __init__(self, cfg: AppConfig, root: str) -> None:
        self._cfg = cfg
        self._root = root
        self._made: dict[str, object] = {}
        # Devices that come up on the event loop before the entry runs (the direct stack:
        # link, address, ARP announcement, so the first SYN is answered at once).
        self.starts: list[Callable[[], Awaitable[None]]] = []
        self._closers: list[tuple[str, Callable[[], None]]] = []

    def get(self, kind: str, param: str) -> object:
        """The device of type `kind` for the entry's parameter named `param`."""
        key = kind
        if kind == "KV_RO":
            key = "KV_RO:" + self._data_folder(param)
        elif kind == "KV_RW":
            key = "KV_RW:" + self._store_name(param)
        if key not in self._made:
            self._made[key] = self._make(kind, key, param)
        return self._made[key]

    def close(self) -> list[str]:
        """Close the devices that hold something (each store: its Git view completed, its
        lock released), newest first; one line for each that failed. Safe to repeat."""
        failed = []
        while self._closers:
            what, close = self._closers.pop()
            try:
                close()
            except Exception as e:
                failed.append(f"closing {what}: {type(e).__name__}: {e}")
        return failed

    def made(self, kind: str) -> bool:
        """Whether a device of this kind has been made."""
        return kind in self._made

    def _make(self, kind: str, key: str, param: str) -> object:
        from summon.runtime import posix_devices

        if kind == "Console":
            level = os.environ.get("SUMMON_LOG_LEVEL") or "info"
            try:
                return posix_devices.StdoutConsole(level)
            except ValueError as e:
                raise Fail(f"SUMMON_LOG_LEVEL: {e}") from None
        if kind == "Clock":
            return posix_devices.SystemClock()
        if kind == "Random":
            return posix_devices.KernelRandom()
        if kind == "KV_RO":
            name = key.partition(":")[2]
            folder = host_path(self._root, self._cfg.data[name])
            if not os.path.isdir(folder):
                raise Fail(f"data folder {name!r} ({self._cfg.data[name]}) is not in the image", 1)
            return posix_devices.FolderKV(folder)
        if kind == "Secrets":
            from summon.secrets import FolderSecrets

            where = os.environ.get("SUMMON_SECRETS") or host_path(self._root, SECRETS_PATH)
            return FolderSecrets(where)
        if kind == "TLS":
            return self._tls(param)
        if kind == "KV_RW":
            return self._store(key.partition(":")[2], param)
        return self._stack(param)

    def _store(self, name: str, param: str) -> object:
        """The KV_RW store `name` of the manifest, opened in its folder on its volume."""
        path = self._cfg.stores[name]
        folder = self._volume_folder(path, param, name)
        from summon import kv  # ~8 ms: only apps that ask for a store pay it

        author = f"{self._cfg.name} <{self._cfg.name}@localhost>"
        where = f"store {name!r} at {path}"
        try:
            store = kv.open_folder(folder, author=author)
        except kv.StoreLocked as e:
            raise Fail(f"{where}: {e}") from None
        except (kv.KVError, kv.StoreFull) as e:
            raise Fail(f"{where}: {e}", 1) from None
        except PermissionError as e:
            raise Fail(
                f"{where}: the app may not write its volume ({e.strerror}: {e.filename}); "
                "give the folder to the app's user"
            ) from None
        except OSError as e:
            raise Fail(f"{where}: {e.strerror or e}", 1) from None
        self._closers.append((f"store {name!r}", store.close))

        async def attach() -> None:  # a WSGI app commits on worker threads: flush timers
            import asyncio  # go on the loop serving it (only awaited under asyncio)

            store.attach_loop(asyncio.get_running_loop())

        self.starts.append(attach)
        return store

    def _volume_folder(self, path: str, param: str, name: str) -> str:
        """Where the store at image path `path` is on this host, on its mounted volume."""
        volume = ""
        for v in self._cfg.volumes:
            if path.startswith(v.rstrip("/") + "/") and len(v) > len(volume):
                volume = v.rstrip("/")
        mounted: dict[str, str] = {}
        for item in os.environ.get(VOLUMES_ENV, "").split(":"):
            where, _, host = item.partition("=")
            if where:
                mounted[where.rstrip("/")] = host
        if volume and volume not in mounted and os.path.ismount(host_path(self._root, volume)):
            mounted[volume] = ""  # an engine's volume (podman -v, a Kubernetes claim): no env
        if not volume or volume not in mounted:
            at = volume or path
            raise Fail(
                f"parameter {param!r} of {self._cfg.entry} asks for the store {name!r} at "
                f"{path}, but no volume is mounted at {at}; run it with -v NAME:{at} (a named "
                f"volume, made on first use) or -v /host/folder:{at}"
            )
        host = mounted[volume]
        if host:  # the unix target: the app sees the host's folder itself
            return host.rstrip("/") + path[len(volume) :]
        return host_path(self._root, path)

    def _store_name(self, param: str) -> str:
        """The store a KV_RW parameter gets: the one of its name, or the only one."""
        stores = self._cfg.stores
        if param in stores:
            return param
        if len(stores) == 1:
            return next(iter(stores))
        entry = self._cfg.entry
        if not stores:
            raise Fail(
                f"parameter {param!r} of {entry} asks for a KV_RW, but the image has no store; "
                f'add stores = {{ {param} = "/data/{param}" }} and volumes = ["/data"] to '
                f"{self._cfg.manifest} and rebuild"
            )
        raise Fail(
            f"parameter {param!r} of {entry} asks for a KV_RW, but no store has that name; "
            f"name the parameter after one of: {', '.join(sorted(stores))}"
        )

    def _tls(self, param: str) -> object:
        tls = self._cfg.tls
        if tls is None:
            raise Fail(
                f"parameter {param!r} of {self._cfg.entry} asks for the TLS device, but the "
                'image has no TLS; add tls = { backend = "openssl" } to '
                f"{self._cfg.manifest} and rebuild"
            )
        from summon.tls.device import TLSDevice

        return TLSDevice(self.get("Secrets", "secrets"), backend=str(tls["backend"]))  # type: ignore[arg-type]

    def _terminated(self, stack: Stack) -> Stack:
        """The Stack the app gets: TLS served for it on the manifest's tls.ports, if any."""
        tls = self._cfg.tls or {}
        ports = [p for p in tls.get("ports") or () if isinstance(p, int)]  # type: ignore[attr-defined]
        if not ports:
            return stack
        from summon.tls.errors import TLSError
        from summon.tls.terminate import TLSStack

        device = self.get("TLS", "tls")
        alpn = [a for a in tls.get("alpn") or () if isinstance(a, str)]  # type: ignore[attr-defined]
        try:
            context = device.server(  # type: ignore[attr-defined]
                cert=str(tls.get("cert", "tls.crt")),
                key=str(tls.get("key", "tls.key")),
                client_auth=str(tls.get("client_auth", "none")),
                client_ca=str(tls.get("client_ca") or "") or None,
                alpn=tuple(alpn),
            )
        except (TLSError, KeyError) as e:  # a secret missing or unusable: say which, and stop
            raise Fail(f"TLS for ports {ports}: {e}") from None
        return TLSStack(stack, context, frozenset(ports))

    def _stack(self, param: str) -> object:
        """The Stack of the image's network mode. The seal closes when it first listens, and
        in a VM the snapshot point follows (vm's watch wraps the seal's), so a guest restored
        from a snapshot is sealed already."""
        stack = self._network_stack(param)
        seal = sys.modules.get("summon.runtime.seal")
        sealer = seal._active if seal is not None else None
        if sealer is not None:
            stack = sealer.watch_stack(stack)
        vm = sys.modules.get("summon.runtime.vm")
        return vm.watch_stack(stack) if vm is not None and vm.active else stack

    def _network_stack(self, param: str) -> object:
        network = self._cfg.network
        if network == "socket":
            from summon.runtime.socket_stack import SocketStack

            try:
                return self._terminated(SocketStack.from_environ(os.environ))
            except ValueError as e:
                raise Fail(str(e)) from None
        if network == "direct":
            from summon.net.stack import DirectStack

            try:
                stack = DirectStack.from_environ(os.environ)
            except ValueError as e:
                raise Fail(str(e)) from None
            self.starts.append(stack.start)
            return self._terminated(stack)
        raise Fail(
            f"parameter {param!r} of {self._cfg.entry} asks for a Stack, but the image was "
            f'built with network = {network!r}; set network = "socket" in {self._cfg.manifest}'
        )

    def _data_folder(self, param: str) -> str:
        """The data folder a KV_RO parameter gets: the one of its name, or the only one."""
        data = self._cfg.data
        if param in data:
            return param
        # Folder names may hold '-' or '.', parameter names cannot.
        for name in data:
            if name.replace("-", "_").replace(".", "_") == param:
                return name
        if len(data) == 1:
            return next(iter(data))
        entry = self._cfg.entry
        if not data:
            raise Fail(
                f"parameter {param!r} of {entry} asks for a KV_RO, but the image has no data "
                f'folder; add data = ["{param}"] to {self._cfg.manifest} and rebuild'
            )
        raise Fail(
            f"parameter {param!r} of {entry} asks for a KV_RO, but no data folder has that "
            f"name; name the parameter after one of: {', '.join(sorted(data))}"
        )
