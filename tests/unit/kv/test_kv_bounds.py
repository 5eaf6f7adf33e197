"""Git data an app wrote (its volume) or a bundle holds is untrusted: a host-side reader
(`summon volume export`, `volume import`) never inflates more than an object declares.

Rule (summon.kv.objects.inflate_exact, decode_loose; pack.apply_delta): an object inflates to
its declared size, which is at most MAX_OBJECT; a delta makes at most the size it declares.
A few hundred KB of zlib that would make hundreds of MB are refused after at most the
declared size (+1 byte) was made, each in one line, exit status 2, no bundle half-written.
"""

from __future__ import annotations

import functools
import os
import struct
import tracemalloc
import zlib
from hashlib import sha1
from pathlib import Path

import pytest
from click.testing import CliRunner

from summon import kv
from summon.cli.main import cli
from summon.kv.errors import CorruptStore
from summon.kv.objects import BLOB, MAX_OBJECT, SMALL_LOOSE, decode_loose, object_id
from summon.kv.odb import loose_path
from summon.kv.pack import apply_delta
from summon.kv.packwrite import index_pack

BOMB_MB = 64  # inflated; ~64 KB compressed


@functools.cache
def bomb(prefix: bytes, mb: int = BOMB_MB) -> bytes:
    c = zlib.compressobj(9)
    zeros = b"\0" * (1 << 20)
    return c.compress(prefix) + b"".join(c.compress(zeros) for _ in range(mb)) + c.flush()


def peak_while(func: object) -> int:
    """The most bytes Python held while `func` ran (it must raise CorruptStore)."""
    tracemalloc.start()
    try:
        with pytest.raises(CorruptStore) as caught:
            func()  # type: ignore[operator]
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        print(caught.value)


def test_a_loose_object_inflates_to_its_declared_size_only() -> None:
    # rule: an object inflates to its declared size (decode_loose)
    oid = object_id(BLOB, b"hello")
    raw = bomb(b"blob 5\0")
    assert len(raw) < 1 << 20
    with pytest.raises(CorruptStore, match="inflates past the 5 bytes its header says"):
        decode_loose(raw, oid)
    assert peak_while(lambda: decode_loose(raw, oid)) < 4 << 20
    # ...and no declared size over MAX_OBJECT is believed, so nothing is inflated at all
    huge = zlib.compress(b"blob %d\0" % (MAX_OBJECT + 1))
    with pytest.raises(CorruptStore, match=f"over the {MAX_OBJECT} an object may have"):
        decode_loose(huge, oid)
    # A small file (at most SMALL_LOOSE bytes, at most ~1 MiB inflated) is inflated at once,
    # and checked the same way.
    small = zlib.compress(b"blob 5\0" + bytes(100_000), 9)
    assert len(small) <= SMALL_LOOSE
    with pytest.raises(CorruptStore, match="inflates past the 5 bytes its header says"):
        decode_loose(small, oid)
    with pytest.raises(CorruptStore, match="cut short"):
        decode_loose(zlib.compress(b"blob 5\0hel"), oid)
    assert decode_loose(zlib.compress(b"blob 5\0hello"), oid) == (BLOB, b"hello")


def pack_of(*entries: tuple[int, int, bytes]) -> bytes:
    """A pack of (type, declared size, zlib data) entries, with its checksum."""
    body = [b"PACK", struct.pack(">II", 2, len(entries))]
    for kind_no, size, data in entries:
        head = [(kind_no << 4) | (size & 15)]
        size >>= 4
        while size:
            head[-1] |= 0x80
            head.append(size & 0x7F)
            size >>= 7
        body += [bytes(head), data]
    whole = b"".join(body)
    return whole + sha1(whole).digest()


def test_a_pack_entry_inflates_to_its_declared_size_only() -> None:
    # rule: an object inflates to its declared size (inflate_exact, for packs and bundles)
    pack = pack_of((3, 5, bomb(b"")))
    with pytest.raises(CorruptStore, match="inflates past the 5 bytes its header says"):
        index_pack(pack)
    assert peak_while(lambda: index_pack(pack)) < 4 << 20
    too_big = pack_of((3, MAX_OBJECT + 1, zlib.compress(b"x")))
    with pytest.raises(CorruptStore, match="over the 1073741824 an object may have"):
        index_pack(too_big)
    assert index_pack(pack_of((3, 5, zlib.compress(b"hello"))))[1] == {
        object_id(BLOB, b"hello"): (BLOB, b"hello")
    }


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not out[-1] & 0x80:
            return bytes(out)


def test_a_delta_makes_at_most_what_it_declares() -> None:
    # rule: a delta makes at most the size it declares, and that at most MAX_OBJECT
    base = b"x" * 0x10000
    copy_all = bytes([0x80 | 0x10 | 0x20, 0x00, 0x00])  # copy 0x0000 bytes = 0x10000 from 0
    liar = varint(len(base)) + varint(10) + copy_all * 4096  # 12 KB making 256 MiB
    with pytest.raises(CorruptStore, match="makes more than the 10 bytes it says"):
        apply_delta(base, liar)
    assert peak_while(lambda: apply_delta(base, liar)) < 4 << 20
    huge = varint(len(base)) + varint(1 << 40) + copy_all
    with pytest.raises(CorruptStore, match="says it makes 1099511627776 bytes, over the"):
        apply_delta(base, huge)
    assert apply_delta(base, varint(len(base)) + varint(0x10000) + copy_all) == base


def test_volume_export_refuses_a_bomb_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # rule: an object inflates to its declared size, through `summon volume export`
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    runner = CliRunner()
    folder = Path(runner.invoke(cli, ["volume", "create", "todo"]).output.strip())
    with kv.open_folder(str(folder / "todo")) as store:
        store.set("k", b"hello")
    loose = folder / "todo" / loose_path(object_id(BLOB, b"hello"))
    assert loose.is_file()
    out = tmp_path / "todo.bundle"
    assert runner.invoke(cli, ["volume", "export", "todo", "-o", str(out)]).exit_code == 0
    out.unlink()
    os.chmod(loose, 0o644)
    loose.write_bytes(bomb(b"blob 5\0"))
    result = runner.invoke(cli, ["volume", "export", "todo", "-o", str(out)])
    assert result.exit_code == 2, result.output
    assert result.output.count("\n") == 1
    assert "inflates past the 5 bytes its header says" in result.output
    assert not out.exists() and not list(tmp_path.glob("todo.bundle*"))


def test_a_value_the_store_could_not_read_back_is_refused_at_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Reads inflate at most MAX_OBJECT: a bigger value is refused when written, not lost
    # when read (the bound made small here, as 1 GiB of test data is not worth it).
    from summon.kv import views

    monkeypatch.setattr(views, "MAX_OBJECT", 10)
    store = kv.open_memory()
    store.set("fits", b"x" * 10)
    with pytest.raises(ValueError, match="a value is at most 10 bytes"):
        store.set("big", b"x" * 11)
    with pytest.raises(ValueError, match="a value is at most 10 bytes"), store.transaction() as t:
        t.set("big", bytearray(11))
    assert store.list() == ["fits"]
