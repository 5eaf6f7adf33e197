"""Fuzzing summon.kv's parsers with hypothesis: parse, or raise the store's own typed error
(CorruptStore, UnsupportedRepository, BundleError), nothing else. Inputs are arbitrary
bytes and mutations of valid files (flipped bits, cut or grown ends). Writers and readers
must round-trip: a pack made by PackWriter is indexed to the same ids, deltas apply back.
"""

from __future__ import annotations

import struct
import zlib

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from summon.kv import journal as jr
from summon.kv.bundle import read_bundle
from summon.kv.errors import BundleError, CorruptStore, UnsupportedRepository
from summon.kv.memory import MemoryBackend
from summon.kv.objects import (
    BLOB,
    TREE,
    decode_loose,
    deflate,
    encode_loose,
    object_id,
    parse_commit,
    parse_tree,
)
from summon.kv.pack import Pack, PackIndex, apply_delta
from summon.kv.packwrite import PackWriter, encode_delta, index_pack
from summon.kv.refs import Refs, check_config

FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
STORE_ERRORS = (CorruptStore, UnsupportedRepository)


@st.composite
def mutated(draw: st.DrawFn, valid: bytes) -> bytes:
    """`valid` with a bit flipped, cut short, grown, or a byte overwritten."""
    data = bytearray(valid)
    how = draw(st.sampled_from(["flip", "cut", "grow", "set"]))
    if how == "cut" or not data:
        return bytes(data[: draw(st.integers(0, max(len(data) - 1, 0)))])
    if how == "grow":
        return bytes(data) + draw(st.binary(min_size=1, max_size=40))
    i = draw(st.integers(0, len(data) - 1))
    if how == "flip":
        data[i] ^= 1 << draw(st.integers(0, 7))
    else:
        data[i] = draw(st.integers(0, 255))
    return bytes(data)


def _tree() -> bytes:
    return b"".join(
        mode + b" " + name + b"\0" + bytes([n]) * 20
        for n, (mode, name) in enumerate([(b"100644", b"a"), (b"40000", b"b"), (b"100755", b"c")])
    )


def _commit() -> bytes:
    return (
        b"tree " + b"1" * 40 + b"\nparent " + b"2" * 40 + b"\nauthor A <a> 1 +0000\n"
        b"committer A <a> 1 +0000\n\nmessage\n"
    )


@FUZZ
@given(st.one_of(st.binary(max_size=200), mutated(_tree())))
def test_tree_parse_or_corrupt(data: bytes) -> None:
    try:
        parse_tree(data)
    except CorruptStore:
        pass


@FUZZ
@given(st.one_of(st.binary(max_size=300), mutated(_commit())))
def test_commit_parse_or_corrupt(data: bytes) -> None:
    try:
        commit = parse_commit(data)
    except CorruptStore:
        return
    assert len(commit.tree) == 20 and all(len(p) == 20 for p in commit.parents)


@FUZZ
@given(st.one_of(st.binary(max_size=200), mutated(encode_loose(BLOB, b"hello world"))))
def test_loose_object_decode_or_corrupt(data: bytes) -> None:
    try:
        kind, body = decode_loose(data, object_id(BLOB, b"hello world"))
    except CorruptStore:
        return
    assert (kind, body) == (BLOB, b"hello world")  # only the real object passes its id check


def _pack() -> tuple[bytes, bytes, dict[bytes, tuple[bytes, bytes]]]:
    writer = PackWriter(level=0)
    objects: dict[bytes, tuple[bytes, bytes]] = {}
    previous = None
    for i in range(6):
        body = b"line %d\n" % i + b"common text " * 20
        oid = object_id(BLOB, body)
        objects[oid] = (BLOB, body)
        writer.add(oid, BLOB, body, previous, objects[previous][1] if previous else None)
        previous = oid
    tree = _tree()
    objects[object_id(TREE, tree)] = (TREE, tree)
    writer.add(object_id(TREE, tree), TREE, tree)
    pack, idx, _ = writer.finish()
    return pack, idx, objects


PACK, IDX, OBJECTS = _pack()


def test_a_written_pack_indexes_back_to_its_objects() -> None:
    idx, objects = index_pack(PACK)
    assert idx == IDX
    assert objects == OBJECTS
    backend = MemoryBackend({"p.pack": PACK})
    pack = Pack(backend, "p.pack", PackIndex(IDX, "p.idx"))
    for oid, item in OBJECTS.items():
        assert pack.read(oid, lambda o: (b"", b"")) == item


@FUZZ
@given(st.one_of(st.binary(max_size=300), mutated(PACK)))
def test_index_pack_or_corrupt(data: bytes) -> None:
    try:
        _, objects = index_pack(data)
    except CorruptStore:
        return
    for oid, (kind, body) in objects.items():
        assert object_id(kind, body) == oid


@FUZZ
@given(st.one_of(st.binary(max_size=300), mutated(IDX)))
def test_pack_index_parse_or_error(data: bytes) -> None:
    try:
        PackIndex(data, "fuzz.idx")
    except STORE_ERRORS:
        pass


@FUZZ
@given(mutated(PACK))
def test_reading_a_damaged_pack_through_a_good_index(data: bytes) -> None:
    backend = MemoryBackend({"p.pack": data})
    try:
        pack = Pack(backend, "p.pack", PackIndex(IDX, "p.idx"))
        for oid in OBJECTS:
            pack.read(oid, lambda o: (b"", b""))
    except CorruptStore:
        pass


@FUZZ
@given(st.binary(max_size=300), st.binary(max_size=300))
def test_deltas_round_trip(base: bytes, target: bytes) -> None:
    delta = encode_delta(base, target)
    if delta is not None:
        assert apply_delta(base, delta) == target
        assert len(delta) * 2 < len(target)


@FUZZ
@given(st.binary(max_size=100), st.binary(max_size=100))
def test_apply_delta_or_corrupt(base: bytes, delta: bytes) -> None:
    try:
        apply_delta(base, delta)
    except CorruptStore:
        pass


@FUZZ
@given(st.binary(max_size=70_000))
def test_stored_deflate_is_zlib(data: bytes) -> None:
    assert zlib.decompress(deflate(data, 0)) == data


def _journal() -> bytes:
    backend = MemoryBackend()
    journal = jr.Journal(backend, reserve=0)
    journal.open()
    changes: list[tuple[bytes, bytes | None]] = [(b"a", b"1"), (b"b", None)]
    journal.append(jr.encode_commit("refs/heads/main", _commit(), changes, False))
    journal.append(jr.encode_ref("refs/heads/x", b"\1" * 20))
    journal.append(jr.encode_head("refs/heads/x"))
    return backend.read(journal.active.path)


JOURNAL = _journal()


@FUZZ
@given(st.one_of(st.binary(max_size=300), mutated(JOURNAL)))
def test_journal_scan_and_decode_or_corrupt(data: bytes) -> None:
    try:
        _, _, records, end = jr.scan(data)
    except CorruptStore:
        return
    assert end <= len(data)
    for payload in records:
        try:
            jr.decode(payload)
        except CorruptStore:
            pass


@FUZZ
@given(st.binary(max_size=200))
def test_record_payloads_decode_or_corrupt(payload: bytes) -> None:
    try:
        jr.decode(payload)
    except CorruptStore:
        pass


BUNDLE = b"# v2 git bundle\n" + b"a" * 40 + b" refs/heads/main\n\n" + PACK


@FUZZ
@given(st.one_of(st.binary(max_size=200), mutated(BUNDLE)))
def test_bundle_header_or_bundle_error(data: bytes) -> None:
    try:
        refs, _ = read_bundle(data, "fuzz.bundle")
    except BundleError:
        return
    assert all(len(oid) == 20 for _, oid in refs)


PACKED_REFS = b"# pack-refs with: peeled\n" + b"1" * 40 + b" refs/heads/main\n^" + b"2" * 40 + b"\n"


@FUZZ
@given(st.one_of(st.binary(max_size=200), mutated(PACKED_REFS)))
def test_packed_refs_parse_or_corrupt(data: bytes) -> None:
    backend = MemoryBackend({"HEAD": b"ref: refs/heads/main\n", "packed-refs": data})
    try:
        Refs(backend).load()
    except CorruptStore:
        pass


@FUZZ
@given(st.binary(max_size=200))
def test_config_check_accepts_or_refuses(data: bytes) -> None:
    try:
        check_config(data, "fuzz")
    except UnsupportedRepository:
        pass


def test_a_record_with_a_wrong_checksum_is_the_end() -> None:
    data = bytearray(JOURNAL)
    length = struct.unpack(">I", data[jr.START : jr.START + 4])[0]
    data[jr.START + 8 + length // 2] ^= 0xFF
    assert jr.scan(bytes(data))[2] == []
