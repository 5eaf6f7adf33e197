"""The reproducible root filesystem archive."""

from __future__ import annotations

import gzip
import io
import tarfile
from pathlib import Path

import pytest

from summon.build.rootfs import Rootfs


def sample(tmp_path: Path, order: list[str]) -> Rootfs:
    fs = Rootfs()
    for name in order:
        src = tmp_path / name
        src.write_text(name)
        fs.add_file(f"/app/{name}", src, "app")
    fs.add_symlink("/lib64/ld.so", "/lib/ld.so")
    fs.add_bytes("/etc/summon/app.json", b"{}", "config")
    return fs


def test_same_entries_same_bytes_whatever_the_order(tmp_path: Path) -> None:
    a, b = io.BytesIO(), io.BytesIO()
    id_a, _ = sample(tmp_path, ["x.py", "y.py", "z.py"]).write(a)
    id_b, _ = sample(tmp_path, ["z.py", "x.py", "y.py"]).write(b)
    assert a.getvalue() == b.getvalue()
    assert id_a == id_b


def test_entries_sorted_with_fixed_owner_and_time(tmp_path: Path) -> None:
    buf = io.BytesIO()
    diff_id, size = sample(tmp_path, ["b.py", "a.py"]).write(buf)
    raw = gzip.decompress(buf.getvalue())
    assert len(raw) == size
    import hashlib

    assert diff_id == "sha256:" + hashlib.sha256(raw).hexdigest()
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        members = tar.getmembers()
    names = [m.name for m in members]
    assert names == sorted(names)
    assert "app" in names and "etc/summon" in names  # parents are implied
    assert all(m.mtime == 0 and m.uid == 0 and m.gid == 0 and m.uname == "" for m in members)
    assert buf.getvalue()[4:8] == b"\0\0\0\0"  # gzip header mtime


def test_conflicting_entries_are_refused(tmp_path: Path) -> None:
    fs = Rootfs()
    fs.add_bytes("/a", b"1", "app")
    with pytest.raises(ValueError, match="two different entries"):
        fs.add_bytes("/a", b"2", "app")
    with pytest.raises(ValueError, match=r"'\.\.'"):
        fs.add_bytes("/a/../etc/passwd", b"", "app")


def test_sizes_by_group(tmp_path: Path) -> None:
    fs = sample(tmp_path, ["a.py"])
    sizes = fs.sizes()
    assert sizes["app"] == len("a.py")
    assert sizes["config"] == 2


def test_a_file_name_that_is_not_utf8_is_one_build_error(tmp_path: Path) -> None:
    # A name such as b"bad\xffname" in the app's folder went into the layer, then the image's
    # file list could not be written: an internal UnicodeEncodeError.
    from summon.errors import BuildError

    name = tmp_path / (b"bad\xffname".decode(errors="surrogateescape"))
    name.write_text("x")
    fs = Rootfs()
    with pytest.raises(BuildError) as e:
        fs.add_file(f"/app/{name.name}", name, "app")
    assert str(e.value) == f"{name}: the file name is not UTF-8; rename it (an image's names are)"
    fs.add_file("/app/é.txt", name, "app")  # UTF-8 beyond ASCII is fine
