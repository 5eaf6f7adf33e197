"""The unix target runs the image's interpreter with the image's own loader and libraries.

A wheel's bundled libraries (numpy's OpenBLAS in numpy.libs, Pillow's libtiff) live in the
image's library folder, where the host's loader never looks: run by it, `--target unix`
failed to import numpy or Pillow, which the sandbox and the VM ran.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from testroot import APP_DIR

from summon.targets.base import RunSpec
from summon.targets.unix import UnixTarget, through_image_loader

SCRIPT = """
import ctypes
lib = ctypes.CDLL("libsummon-only-in-image.so.1")
lib.zlibVersion.restype = ctypes.c_char_p
print("loaded", lib.zlibVersion().decode(), flush=True)
"""


def test_a_library_only_the_image_holds_loads(test_rootfs: Path, tmp_path: Path) -> None:
    folder = next(p for p in sorted(test_rootfs.glob("lib/*-linux-gnu")) if p.is_dir())
    zlib = next(p for p in sorted(folder.glob("libz.so*")) if p.is_file())
    only = folder / "libsummon-only-in-image.so.1"  # on no host library path
    shutil.copyfile(zlib, only)
    (test_rootfs / APP_DIR / "dlopen_image_lib.py").write_text(SCRIPT)
    out = tmp_path / "out"
    try:
        with open(out, "wb") as f:
            spec = RunSpec(
                name="unix-loader",
                image="test",
                rootfs=test_rootfs,
                app_config={},
                argv=("/usr/bin/python3.11", "-S", "-E", f"/{APP_DIR}/dlopen_image_lib.py"),
                state_dir=tmp_path / "state",
                stdout=f.fileno(),
            )
            instance = UnixTarget().start(spec)
            status = instance.wait(30)
    finally:
        only.unlink()
    assert status == 0, out.read_text()
    assert out.read_text().startswith("loaded 1."), out.read_text()


def test_the_loader_and_the_folders_are_the_images(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "lib64").mkdir(parents=True)
    (root / "lib64" / "ld-linux-x86-64.so.2").write_bytes(b"")
    (root / "lib" / "x86_64-linux-gnu").mkdir(parents=True)
    (root / "usr" / "lib").mkdir(parents=True)
    python = str(root / "usr/bin/python3.11")
    assert through_image_loader(root, [python, "-S"]) == [
        str(root / "lib64/ld-linux-x86-64.so.2"), "--argv0", python, "--library-path",
        f"{root}/lib/x86_64-linux-gnu:{root}/lib:{root}/usr/lib", python, "-S",
    ]  # fmt: skip
    bare = tmp_path / "bare"  # no loader of its own: as it is
    bare.mkdir()
    assert through_image_loader(bare, [str(bare / "python")]) == [str(bare / "python")]
