"""The qemu target's snapshots: which guests get one, what their key covers, saving, restoring.

A guest gets a snapshot point (run.json "snapshot") when its app serves through the Stack
device: a function, WSGI or ASGI entry, a network, declared ports. Its runtime then stops when
the Stack first listens (summon.runtime.vm.app_up) and the instance saves it there
(QemuInstance.boot). Never snapshotted, said once per target: an instance with disks (volumes
now, secrets later): a snapshot would hold what it read of them and restore it beside disks
that moved on. The cache (summon.targets.snapshots) bounds the total size.

The key covers everything that shapes the guest: the image digest, the kernel and initramfs
blobs, the kernel command line, the run's settings (environment, network mode, modules), the
QEMU command line less what is per run (paths, port forwards, the monitor), the accelerator
and, for KVM, the host CPU, and the QEMU binary (path, size, mtime: an upgrade makes new
snapshots). A changed input is a new key, hence a boot that saves a new snapshot.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import time
from collections.abc import Callable
from typing import Any

from summon.errors import SummonError
from summon.targets.base import RunSpec
from summon.targets.qemu.instance import ForwardRefused, QemuInstance
from summon.targets.qemu.migration import FeedThread, save
from summon.targets.snapshots import CONFIG_KEY, CorruptSnapshot, Snapshot, SnapshotCache

POINT_ENTRIES = ("function", "wsgi", "asgi")  # the kinds whose Stack the runtime watches
# Freed pages zeroed: QEMU sends a zero page as a flag, not 4 KiB. The initramfs the kernel
# freed after unpacking it alone was 9 MB of examples/http's 42 MB snapshot (33 MB with it).
SNAPSHOT_KERNEL_ARGS = ("init_on_free=1",)
SAVE_TIMEOUT = 60.0
RESTORE_TIMEOUT = 30.0  # QEMU start, load (~0.1 s for 50 MB), resume; then a boot instead


def expects_point(spec: RunSpec) -> bool:
    """Whether the app will reach the snapshot point: it serves through the Stack device."""
    app = spec.app_config
    entry = app.get("entry")
    if not isinstance(entry, dict) or entry.get("stack") is False:  # no Stack: no point
        return False
    kind = entry.get("kind")
    return kind in POINT_ENTRIES and spec.network in ("socket", "direct") and bool(app.get("ports"))


def refusal(spec: RunSpec) -> str:
    """Why an instance of spec is never snapshotted ("" if it may be)."""
    if spec.volumes:
        return "it has volumes, whose contents a snapshot would hold a stale view of"
    if spec.secrets:
        # A snapshot is the guest's memory on the host's disk, kept across runs: the secrets
        # would be written there, and a later run with other secrets would restore these.
        return "it has secrets, which a snapshot would keep on disk and give to later runs"
    if spec.app_config.get("egress"):
        # Its QEMU runs in a network namespace made per boot (outbound.py), which a restore
        # would have to make again first.
        return "it has egress, whose network namespace a restore does not make yet"
    return ""


def qemu_identity(qemu: str) -> dict[str, Any]:
    """What tells one QEMU build from another without running it (~30 ms per --version)."""
    real = os.path.realpath(qemu)
    st = os.stat(real)
    return {"path": real, "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def qemu_version(qemu: str) -> str:
    out = subprocess.run([qemu, "--version"], capture_output=True, text=True, check=False)
    return out.stdout.splitlines()[0] if out.stdout else ""


def host_cpu() -> str:
    """The host CPU a KVM guest sees through -cpu host (model and flags, hashed)."""
    try:
        with open("/proc/cpuinfo") as f:
            text = f.read().split("\n\n", 1)[0]
    except OSError:
        return ""
    keep = [line for line in text.splitlines() if line.startswith(("model name", "flags"))]
    return hashlib.sha256("\n".join(keep).encode()).hexdigest()


def material(
    *,
    spec: RunSpec,
    qemu: str,
    accel: str,
    argv: list[str],
    kernel: str,
    initramfs: str,
    raw_initrd: bool,
    cmdline: str,
    settings: dict[str, Any],
) -> dict[str, Any]:
    """What the key of a guest is made of (see the module docstring).

    argv: QEMU's command line without the binary, the boot files, the port forwards and
    the monitor (what qemu_argv gives for a restore).
    """
    return {
        "format": 1,
        "image": spec.image_digest,
        "kernel": kernel,
        "initramfs": initramfs,
        "raw_initrd": raw_initrd,
        "cmdline": cmdline,
        "settings": settings,
        "argv": argv,
        "accel": accel,
        "cpu": host_cpu() if accel == "kvm" else "",
        "qemu": qemu_identity(qemu),
    }


def _why(e: BaseException) -> str:
    """An error in words: an OSError's reason without its errno and paths (said beside it)."""
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    return str(e)


class Snapshots:
    """The qemu target's side of the snapshot cache: find one, save at the point, restore."""

    def __init__(self, cache: SnapshotCache, target: str, notice: Callable[[str], None]):
        self.cache = cache
        self.target = target
        self.notice = notice

    def find(self, key: str) -> Snapshot | None:
        """The snapshot under key; a corrupt one is said, removed, and not returned."""
        try:
            snap = self.cache.find(key)
        except CorruptSnapshot as e:
            self.notice(f"warning: {e}: refused and {self._drop(key)}; booting instead")
            return None
        if snap is not None:
            # Used from now on: another start holding the bound meanwhile evicts others first.
            self.cache.used(snap)
        return snap

    def trim(self, keep: str = "") -> None:
        """Hold the cache to its bound now, least recently used first, never keep unless it
        alone is over the bound (SnapshotCache.evict); a cache that cannot be trimmed
        (read-only) is said, not fatal."""
        try:
            self.cache.evict(keep=keep)
        except OSError as e:
            self.notice(
                f"warning: snapshots over the bound ({CONFIG_KEY} in config.toml) not removed "
                f"from {self.cache.root}: {_why(e)}"
            )

    def _drop(self, key: str) -> str:
        """Remove a refused snapshot; what became of it ("removed", or why it could not be)."""
        try:
            self.cache.remove(key)
        except OSError as e:  # a read-only cache: the refusal stands, the boot goes on
            return f"not removed from {self.cache.root} ({_why(e)})"
        return "removed"

    def saver(self, key: str, about: dict[str, Any], qemu: str) -> Callable[[QemuInstance], None]:
        """What QemuInstance.boot calls at the snapshot point: save the guest under key.

        A failure (a full disk, QEMU refusing) is said, and the instance runs on unsaved.
        """

        def take(instance: QemuInstance) -> None:
            assert instance.qmp is not None
            started = time.monotonic()
            about_it = {**about, "qemu": qemu_version(qemu), "listening": instance.console.app_up}
            writer = None
            try:
                # In the try: a read-only or missing cache folder fails here, not in save().
                writer = self.cache.writer(key, self.target, about_it)
                save(instance.qmp, writer, SAVE_TIMEOUT)
                snap = writer.commit()
            except (SummonError, OSError) as e:
                if writer is not None:
                    writer.abort()
                where = f" in {self.cache.root}" if isinstance(e, OSError) else ""
                self.notice(f"warning: no snapshot saved{where}: {_why(e)}")
                return
            instance.snapshot_key = key
            if writer.lost:
                self.notice(
                    f"snapshot {key[:12]} was saved meanwhile by another start of this guest: "
                    "later starts restore that one"
                )
                return
            self.notice(
                f"snapshot {key[:12]} saved ({snap.size / 1e6:.0f} MB, "
                f"{time.monotonic() - started:.2f} s): later starts restore it "
                "(--no-snapshot boots)"
            )

        return take

    def restore(self, snap: Snapshot, make: Callable[[], QemuInstance]) -> QemuInstance | None:
        """An instance resumed from snap, or None (said, and snap removed) if it cannot be.

        A chunk that fails its digest stops the feed before QEMU reads it, and the guest,
        held paused (-S), never runs: the snapshot is refused, removed, and the caller boots.
        """
        feeder = FeedThread(snap)
        instance = make()
        instance.mark_listening(str(snap.about.get("listening") or ""))
        started = time.monotonic()
        try:
            instance.restore(feeder, RESTORE_TIMEOUT)
        except ForwardRefused:
            instance.stop(grace=0)  # the snapshot is fine; the port is the user's to fix
            raise
        except CorruptSnapshot as e:
            instance.stop(grace=0)
            self.notice(f"warning: {e}: refused and {self._drop(snap.key)}; booting instead")
            return None
        except (SummonError, OSError) as e:
            instance.stop(grace=0)
            said = instance.qemu_said()
            self.notice(
                f"warning: snapshot {snap.key[:12]} could not be restored ({e}"
                + (f"; QEMU said: {said}" if said else "")
                + f"): {self._drop(snap.key)}; booting instead"
            )
            return None
        instance.snapshot_key = snap.key
        self.notice(
            f"restored from snapshot {snap.key[:12]} in {time.monotonic() - started:.2f} s "
            "(boot skipped; --no-snapshot boots)"
        )
        return instance
