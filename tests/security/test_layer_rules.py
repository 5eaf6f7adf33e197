"""Hostile layers, made by hand with tarfile, on every path that unpacks a layer.

summon's own layers hold only files, folders and links inside the image, so each member
below means a foreign or tampered layer. Each must be refused in one line naming the member
and the rule (store/layer_rules.py), on each path: the unpacked folder (store/image.py
unpack), the erofs image of the verified run path (store/rootfs_artifact.make), and a VM's
initramfs (build/boot.write_initramfs); and through the summon command.
"""

from __future__ import annotations

import gzip
import io
import os
import stat
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest
from fakes import layer_image
from hostile_apps import needs_sandbox
from summon_cli import Summon

from summon.build.boot import write_initramfs
from summon.store import Store, rootfs_artifact
from summon.store.layer_rules import RULES, LayerRefused
from summon.store.layout import Descriptor
from summon.store.unpacked import unpack

Member = Callable[[], tuple[tarfile.TarInfo, bytes]]


def entry(name: str, kind: bytes = tarfile.REGTYPE, **attrs: object) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    for key, value in attrs.items():
        setattr(info, key, value)
    return info


# (member, rule, the member's name as refused); none is ever in a summon-built layer.
HOSTILE = {
    "char-device": (entry("dev/sda", tarfile.CHRTYPE, devmajor=8), "special-file", "dev/sda"),
    "block-device": (entry("dev/vdb", tarfile.BLKTYPE, devmajor=254), "special-file", "dev/vdb"),
    "fifo": (entry("tmp/fifo", tarfile.FIFOTYPE), "special-file", "tmp/fifo"),
    "absolute-symlink": (
        entry("etc/shadow-link", tarfile.SYMTYPE, linkname="/etc/shadow"),
        "absolute-link",
        "etc/shadow-link",
    ),
    "escaping-symlink": (
        entry("app/up", tarfile.SYMTYPE, linkname="../../../root"),
        "escaping-link",
        "app/up",
    ),
    "parent-name": (entry("../escaped"), "parent-name", "../escaped"),
    "parent-inside-name": (entry("app/../../escaped"), "parent-name", "app/../../escaped"),
    "absolute-name": (entry("/etc/cron.d/evil"), "absolute-name", "/etc/cron.d/evil"),
    "hard-link-outside": (
        entry("app/shadow", tarfile.LNKTYPE, linkname="/etc/shadow"),
        "hard-link",
        "app/shadow",
    ),
    "hard-link-inside": (
        entry("app/same", tarfile.LNKTYPE, linkname="etc/summon/app.json"),
        "hard-link",
        "app/same",
    ),
    "setuid-file": (entry("app/su", mode=0o4755), "set-id", "app/su"),
    "setgid-folder": (entry("app/shared", tarfile.DIRTYPE, mode=0o2775), "set-id", "app/shared"),
}


def layer_bytes(*extra: tarfile.TarInfo) -> bytes:
    """A gzip'd tar shaped like an image's root, then the extra members."""
    buf = io.BytesIO()
    app_json = b'{"entry": {"kind": "script", "path": "/app/x.py"}}'
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as gz:
        with tarfile.open(fileobj=gz, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            for folder in ("app", "dev", "etc", "etc/summon", "proc", "tmp"):
                tar.addfile(entry(folder, tarfile.DIRTYPE))
            info = entry("etc/summon/app.json", size=len(app_json))
            tar.addfile(info, io.BytesIO(app_json))
            for member in extra:
                tar.addfile(member)
    return buf.getvalue()


def hostile_image(store: Store, ref: str, *members: tarfile.TarInfo) -> Descriptor:
    """An image (index, manifest, config, layer) of that layer, tagged ref; its layer."""
    config = {"architecture": "amd64", "os": "linux", "config": {}}
    return layer_image(store, ref, layer_bytes(*members), config)[2]


def special_files(root: Path) -> list[Path]:
    found = []
    for folder, _dirs, files in os.walk(root):
        for name in files:
            mode = os.lstat(Path(folder) / name).st_mode
            if not (stat.S_ISREG(mode) or stat.S_ISLNK(mode)):
                found.append(Path(folder) / name)
    return found


def assert_refused(error: LayerRefused, rule: str, member: str) -> None:
    assert error.rule == rule and error.member == member
    text = str(error)
    assert "\n" not in text
    assert f"member {member!r} refused (rule {rule}:" in text


def test_the_rules_are_the_documented_ones() -> None:
    assert set(RULES) == {rule for _, rule, _ in HOSTILE.values()} | {"escaping-link"}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_each_unpack_path_refuses_the_member(
    case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    member, rule, name = HOSTILE[case]
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    store = Store(tmp_path / "store")
    layer = hostile_image(store, f"evil:{case}", member)
    files = store.put_json({"schemaVersion": 1, "entries": []}, rootfs_artifact.FILES_TYPE)

    with pytest.raises(LayerRefused) as into_folder:
        unpack(store, layer, files)
    assert_refused(into_folder.value, rule, name)
    with pytest.raises(LayerRefused) as into_erofs:
        rootfs_artifact.make(store, layer)
    assert_refused(into_erofs.value, rule, name)
    with pytest.raises(LayerRefused) as into_initramfs:
        write_initramfs(store, layer, io.BytesIO())  # type: ignore[arg-type]
    assert_refused(into_initramfs.value, rule, name)

    # Nothing made on the host: no device, no fifo, nothing outside, no temporaries left.
    assert special_files(tmp_path) == []
    assert not (tmp_path / "escaped").exists() and not (tmp_path.parent / "escaped").exists()
    assert list(store.tmp_dir.iterdir()) == []
    assert [p.name for p in (tmp_path / "cache" / "summon" / "rootfs").iterdir()] == []


def test_a_link_escaping_through_an_earlier_link_is_refused_on_the_host(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rule escaping-link, on disk: each target stays inside read alone (d/up -> .. lands on
    the root; d/out -> up/.. climbs from there), but on the host d/out resolves above the
    folder. Inside a mount or a VM the kernel keeps `..` at the root, so the initramfs,
    which is never resolved on the host, takes it."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    store = Store(tmp_path / "store")
    layer = hostile_image(
        store,
        "evil:chain",
        entry("d", tarfile.DIRTYPE),
        entry("d/up", tarfile.SYMTYPE, linkname=".."),
        entry("d/out", tarfile.SYMTYPE, linkname="up/.."),
    )
    files = store.put_json({"schemaVersion": 1, "entries": []}, rootfs_artifact.FILES_TYPE)
    with pytest.raises(LayerRefused) as refused:
        unpack(store, layer, files)
    assert_refused(refused.value, "escaping-link", "d/out")
    with pytest.raises(LayerRefused):
        rootfs_artifact.make(store, layer)
    write_initramfs(store, layer, io.BytesIO())  # type: ignore[arg-type]


@pytest.mark.parametrize("target", ["unix", pytest.param("sandbox", marks=needs_sandbox)])
def test_the_command_refuses_in_one_line(summon: Summon, target: str) -> None:
    member, rule, name = HOSTILE["char-device"]
    hostile_image(Store(summon.store), "evil:device", member)
    r = summon("run", "evil:device", "--target", target)
    assert r.returncode == 2, r.stderr
    lines = [line for line in r.stderr.splitlines() if line.startswith("summon: error:")]
    assert len(lines) == 1, r.stderr
    assert f"member {name!r} refused (rule {rule}:" in lines[0]
    # (this test process holds a folder and a lease there while it lives: hostile_image
    # wrote through them)
    own_lease = Path(f"{Store(summon.store).tmp_dir}.lease")
    left = [p for p in (summon.store / ".tmp").rglob("*") if not p.is_dir() and p != own_lease]
    assert left == []
