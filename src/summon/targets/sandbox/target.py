"""The sandbox target: the image runs as one process under runc, from a generated OCI config.

prepare() mounts the image's verified root filesystem (rootmount.py; derived first for an
image that lacks one), config.py makes the OCI config (user and other namespaces, that
read-only root, masked /proc, no capabilities, seccomp, cgroup limits), instance.py runs and
releases one container; the network namespace is empty but for lo (netns.py), and port
forwards reach it from host loopback (portfwd.py), or the app owns a TAP device in direct
mode (tap.py).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from summon import paths
from summon.errors import TargetUnavailable, UserError
from summon.targets.base import (
    ARGS,
    FREEZE,
    HANDOFF,
    ISOLATED_RUN,
    SECRETS,
    VOLUMES,
    Check,
    RunSpec,
    Target,
)

# What an instance needs (the container, its network namespace, the verified root and what
# those load: the store, ctypes) is imported where it is used: the registry loads this
# module to read the class's options and capabilities (the gateway's config check, at rest).
if TYPE_CHECKING:
    from summon.store.image import Image
    from summon.targets.sandbox.instance import SandboxInstance

    Step = Callable[[str], None]

RUNC_MISSING = "runc not found: install it with `apt-get install runc`, or use --target unix"
NEEDS_ROOT = (
    "the sandbox target needs root (namespaces, cgroups): run summon as root, or use --target unix"
)
# Mount points runc mounts over; it would create missing ones, i.e. write into the image.
MOUNT_POINTS = ("proc", "dev", "tmp")


def write_text(dest: Path, text: str) -> None:
    """Write text to dest whole (temporary name, fsync, rename), or to stdout for "-"."""
    if str(dest) == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, dest)
    except BaseException as e:  # Ctrl-C too: no temporary left beside dest
        # Not missing_ok: under a file (-o afile/x.json) the unlink fails ENOTDIR, and that
        # error was the line ("Not a directory: afile/.x.json.PID.tmp"), naming no -o.
        with contextlib.suppress(OSError):
            tmp.unlink()
        if not isinstance(e, OSError):
            raise
        raise UserError(f"-o {dest}: cannot write it: {e.strerror}") from None


def runc_root() -> Path:
    """Where runc keeps the state of summon's containers."""
    return paths.state_dir() / "runc"


def which(program: str) -> str | None:
    """shutil.which, imported here: shutil loads zlib, bz2 and lzma, which only the paths
    that run a program need."""
    import shutil

    return shutil.which(program)


def find_runc() -> str:
    runc = which("runc")
    if runc is None:
        raise TargetUnavailable(RUNC_MISSING)
    return runc


class SandboxTarget(Target):
    name: ClassVar[str] = "sandbox"
    description: ClassVar[str] = (
        "a runc container: namespaces, no capabilities, seccomp, read-only root, cgroup limits"
    )

    capabilities: ClassVar[frozenset[str]] = frozenset(
        {ISOLATED_RUN, SECRETS, VOLUMES, FREEZE, HANDOFF, ARGS}
    )
    export_formats: ClassVar[dict[str, str]] = {
        "seccomp": "the sandbox's seccomp profile for podman, containerd and the kubelet (JSON)",
        "kube": "a Kubernetes Deployment and Service with the sandbox's policy (YAML)",
    }

    @classmethod
    def default_preference(cls) -> tuple[int, str]:
        return 10, ""

    def export(self, image: Image, fmt: str, dest: Path, step: Step, **options: Any) -> None:
        """seccomp: the engines' profile; kube: the manifests (options: replicas, port,
        host_port, image_name). dest "-" is standard output."""
        from summon.targets.sandbox import export

        if fmt == "seccomp":
            text = export.profile_json(image)
        elif fmt == "kube":
            text = export.kube_yaml(image, **options)
        else:
            super().export(image, fmt, dest, step, **options)
            return
        write_text(dest, text)

    def __init__(self, root: Path | None = None, store: Any = None) -> None:
        """root: runc's state folder (default: runc_root()); store: the image store (default:
        the user's)."""
        self.root = root
        self.store = store

    def _store(self) -> Any:
        from summon.store import Store

        return self.store or Store(paths.store_dir())

    def prepare(self, image: Image, step: Step) -> Image:
        """Mount the image's verified root filesystem (deriving it first if the image has
        none); the image returned runs from that mount."""
        from summon.targets.sandbox import rootmount

        _require_root()

        def say_once(message: str) -> None:
            # A notice, not a progress step: a terminal's spinner would hide it at once.
            print(f"summon: {image.ref}: {message}", file=sys.stderr, flush=True)

        artifact = image.rootfs_artifact(say_once, mount=True)
        root = rootmount.verified_root(image.store, artifact.erofs, image.layer, step)
        return dataclasses.replace(image, root=root)

    def _verified(self, spec: RunSpec) -> RunSpec:
        """spec running from its image's verified root (checked again, mounted if it is not):
        what spec.json recorded of the root is not trusted."""
        from summon.store.image import Image
        from summon.targets.sandbox import rootmount

        store = self._store()
        image = Image.by_digest(store, spec.image_digest, spec.image)
        artifact = image.rootfs_artifact(mount=True)
        root = rootmount.verified_root(store, artifact.erofs, image.layer)
        return dataclasses.replace(spec, rootfs=root)

    def clean_up(self, spec: RunSpec) -> None:
        """Delete the container's runc record and cgroup, its netns and its bundle."""
        from summon.targets.sandbox.instance import SandboxInstance

        runc = which("runc")
        if runc is None:
            return
        leftover = SandboxInstance(runc, self.root or runc_root(), spec)
        leftover._owns_id = True  # the id is the dead instance's: all it names is ours
        leftover.netns._created = True
        leftover._release()

    def leftovers(self, spec: RunSpec) -> list[str]:
        """The runc record, netns, bound root and bundle of spec's container still there."""
        from summon.targets.sandbox import rootmount
        from summon.targets.sandbox.config import container_id
        from summon.targets.sandbox.netns import NetNamespace

        cid = container_id(spec.name)
        found = {
            f"runc container {cid}": (self.root or runc_root()) / cid,
            f"network namespace {cid}": NetNamespace(cid).path,
            "bound root folder": rootmount.BIND_ROOT / cid,
            "bundle": spec.state_dir / "bundle",
        }
        return [f"{what} ({where})" for what, where in found.items() if where.exists()]

    _listener: Callable[[str], None] | None = None

    def hear_notices(self, listener: Callable[[str], None] | None) -> None:
        self._listener = listener

    def start(self, spec: RunSpec, *, record: bool = False) -> SandboxInstance:
        """Start spec; record: under the recording seccomp profile (record.py)."""
        from summon.targets.sandbox import cgroups, seccomp
        from summon.targets.sandbox.instance import SandboxInstance

        runc = find_runc()
        _require_root()
        seccomp.check_label(spec.image, spec.syscalls)
        if spec.image_digest:
            spec = self._verified(spec)
        machine = os.uname().machine  # platform.machine(), without the platform module
        if machine != "x86_64":
            raise TargetUnavailable(
                f"the sandbox's seccomp profile is for x86_64, not {machine}: use --target unix"
            )
        for name in MOUNT_POINTS:
            if not (spec.rootfs / name).is_dir():
                raise UserError(
                    f"image {spec.image} has no /{name} mount point: rebuild it with summon build"
                )
        root = self.root or runc_root()
        root.mkdir(parents=True, exist_ok=True, mode=0o700)
        instance = SandboxInstance(runc, root, spec, record=record, heard=self._listener)
        try:
            # The RCU wait of runc's one cgroup move, paid alongside the rest of the start.
            with cgroups.attach_kept_fast():
                instance._start()
        except BaseException:
            instance.stop(grace=0)
            raise
        return instance

    @classmethod
    def check(cls) -> list[Check]:
        checks = [_check_runc(), _check_root(), _check_arch(), *_check_cgroups()]
        checks.append(_check_seccomp())
        checks.append(_check_netns())
        checks.append(_check_verified_root())
        checks.append(_check_user_namespaces())
        return checks


def _require_root() -> None:
    if os.geteuid() != 0:
        raise TargetUnavailable(NEEDS_ROOT)


def _check_runc() -> Check:
    runc = which("runc")
    if runc is None:
        return Check("sandbox: runc", False, "apt-get install runc")
    version = subprocess.run([runc, "--version"], capture_output=True, text=True, check=False)
    first = version.stdout.splitlines()[0] if version.stdout else "runc"
    return Check(f"sandbox: {first}", True)


def _check_root() -> Check:
    if os.geteuid() == 0:
        return Check("sandbox: running as root", True)
    return Check(
        "sandbox: running as root",
        False,
        "run summon as root; rootless runc would need a user namespace, cgroup v2 delegation "
        "and a netns made by a helper such as slirp4netns",
    )


def _check_arch() -> Check:
    machine = os.uname().machine
    return Check(
        f"sandbox: x86_64 host ({machine})",
        machine == "x86_64",
        "" if machine == "x86_64" else "the seccomp profile is for x86_64 only; use --target unix",
    )


def _check_cgroups() -> list[Check]:
    from summon.targets.sandbox import cgroups

    mounts = cgroups.cgroup_mounts()
    enabled: set[str] = set()
    if "unified" in mounts:
        with contextlib.suppress(OSError):
            enabled |= set((mounts["unified"] / "cgroup.controllers").read_text().split())
    checks = []
    for ctl in ("memory", "pids"):
        ok = ctl in mounts or ctl in enabled
        fix = "" if ok else f"mount the cgroup {ctl} controller (v1) or enable it in cgroup v2"
        checks.append(Check(f"sandbox: cgroup {ctl} controller", ok, fix))
    if (took := cgroups.attach_seconds()) is not None:
        checks.append(_attach_check(took))
    return checks


# A cgroup move that waits out an RCU grace period takes milliseconds; one that does not, tens
# of microseconds.
SLOW_ATTACH_SECONDS = 0.002


def _attach_check(took: float) -> Check:
    """Not a failure either way: how much of every start the kernel's cgroup move costs."""
    what = f"sandbox: moving a process into a cgroup takes {took * 1000:.1f} ms (once a start)"
    if took < SLOW_ATTACH_SECONDS:
        return Check(what, True)
    return Check(
        what,
        True,
        tip=(
            "the kernel waits out an RCU grace period on each move; cgroups mounted with "
            "favordynmods skip it (faster starts, slightly slower fork and exit): "
            "mount -o remount,favordynmods /sys/fs/cgroup/unified (until reboot), or a kernel "
            "built with CONFIG_CGROUP_FAVOR_DYNMODS"
        ),
    )


def _check_seccomp() -> Check:
    what = "sandbox: seccomp with user notification (runc and kernel)"
    try:
        kernel = Path("/proc/sys/kernel/seccomp/actions_avail").read_text().split()
    except OSError:
        kernel = []
    if "user_notif" not in kernel:
        return Check(what, False, "the kernel lacks seccomp user notification: Linux 5.0 or newer")
    runc = which("runc")
    if runc is None:
        return Check(what, False, "apt-get install runc")
    # `runc features` is marked experimental in 1.1 and may be absent; `--version` names
    # libseccomp whenever runc was built with it.
    features = subprocess.run([runc, "features"], capture_output=True, text=True, check=False)
    with contextlib.suppress(ValueError, AttributeError, TypeError):
        sec = json.loads(features.stdout)["linux"]["seccomp"]
        ok = bool(sec.get("enabled")) and "SCMP_ACT_NOTIFY" in sec.get("actions", [])
        return Check(what, ok, "" if ok else "install a runc (1.1+) built with libseccomp 2.5+")
    version = subprocess.run([runc, "--version"], capture_output=True, text=True, check=False)
    ok = "libseccomp" in version.stdout
    return Check(what, ok, "" if ok else "install a runc (1.1+) built with libseccomp 2.5+")


def _check_netns() -> Check:
    from summon.targets.sandbox.netns import NetNamespace, list_namespaces, run_inside

    what = "sandbox: network namespaces under /run/netns"
    if os.geteuid() != 0:
        return Check(what, False, "needs root")
    ns = NetNamespace(f"summon-doctor-{os.getpid()}")
    try:
        ns.create()
        run_inside(ns.path, lambda: None)
    except OSError as e:
        return Check(what, False, f"cannot create one ({e.strerror}); is /run writable?")
    finally:
        ns.remove()
    return Check(what, ns.name not in list_namespaces())


def _check_verified_root() -> Check:
    what = "sandbox: verified root filesystem (erofs on a loop device, made with mkfs.erofs)"
    try:
        kernel = "erofs" in Path("/proc/filesystems").read_text().split()
    except OSError:
        kernel = False
    if not kernel:
        return Check(what, False, "the kernel lacks erofs: Linux 5.4+ with CONFIG_EROFS_FS")
    if not Path("/dev/loop-control").exists():
        return Check(what, False, "no /dev/loop-control: load the loop module (modprobe loop)")
    if which("mkfs.erofs") is None:
        return Check(what, False, "apt-get install erofs-utils")
    return Check(what, True)


def _check_user_namespaces() -> Check:
    what = "sandbox: user namespaces (the app runs as an unprivileged uid)"
    try:
        allowed = int(Path("/proc/sys/user/max_user_namespaces").read_text()) > 0
    except (OSError, ValueError):
        allowed = False
    return Check(what, allowed, "" if allowed else "sysctl -w user.max_user_namespaces=10000")
