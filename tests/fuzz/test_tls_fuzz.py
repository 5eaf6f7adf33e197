"""Fuzzing summon.tls's python backend: parse it, or raise summon.tls's typed error.

Two parts: hypothesis properties on each parser (record framing, the ClientHello peek, DER
certificates, a server session fed anything), and the seeded mutation loop of tls_fuzzing.py
over real handshake messages. SUMMON_TLS_FUZZ_INPUTS sets the loop's size (default 6,000,
about 10 s); `python tests/fuzz/tls_fuzzing.py -n 100000` runs the full count.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tls_fuzzing import Fuzzer, run

from summon.tls.errors import BadCertificate, ProtocolViolation, TLSError
from summon.tls.hello import parse_client_hello
from summon.tls.record import RecordReader
from summon.tls.x509.certificate import Certificate

FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
INPUTS = int(os.environ.get("SUMMON_TLS_FUZZ_INPUTS", "6000"))


@pytest.fixture(scope="module")
def fuzzer() -> Fuzzer:
    with tempfile.TemporaryDirectory() as tmp:
        yield Fuzzer(Path(tmp))  # type: ignore[misc]


def _records(data: bytes, cuts: list[int]) -> list[tuple[int, bytes]] | str:
    reader = RecordReader()
    out: list[tuple[int, bytes]] = []
    try:
        last = 0
        for cut in [*sorted(c % (len(data) + 1) for c in cuts), len(data)]:
            out += [(r.content_type, r.raw) for r in reader.feed(data[last:cut])]
            last = cut
    except ProtocolViolation as e:
        return e.reason
    return out


@FUZZ
@given(st.binary(max_size=3000), st.lists(st.integers(min_value=0), max_size=6))
def test_framing_is_typed_and_independent_of_how_bytes_arrive(data: bytes, cuts: list[int]) -> None:
    assert _records(data, cuts) == _records(data, [])


@FUZZ
@given(st.binary(max_size=600))
def test_the_hello_peek_parses_or_raises_decode_errors(body: bytes) -> None:
    try:
        hello = parse_client_hello(body, 0x0301)
    except ProtocolViolation:
        return
    assert isinstance(hello.versions, tuple)


@FUZZ
@given(st.binary(max_size=1500))
def test_certificates_parse_or_are_malformed(der: bytes) -> None:
    try:
        Certificate(der)
    except BadCertificate as e:
        assert e.reason == "malformed"


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_a_server_session_fed_anything_raises_only_typed_errors(
    fuzzer: Fuzzer, data: st.DataObject
) -> None:
    hello = data.draw(st.sampled_from(fuzzer.hellos))
    prefix = data.draw(st.integers(min_value=0, max_value=len(hello)))
    tail = data.draw(st.binary(max_size=300))
    session = fuzzer.server.session()
    try:
        session.receive_data(hello[:prefix] + tail)
        session.receive_data(b"")
    except TLSError:
        pass


def test_seeded_mutations_raise_only_typed_errors(fuzzer: Fuzzer) -> None:
    outcomes, untyped = run(fuzzer, INPUTS, seed=int(os.environ.get("SUMMON_TLS_FUZZ_SEED", "1")))
    assert not untyped, "\n".join(untyped)
    assert sum(sum(c.values()) for c in outcomes.values()) >= INPUTS * 0.99
    # The loop reaches deep: tlslite-ng answered mutated hellos, chains got to the signature
    # check, and records after a handshake were refused for their MAC or framing.
    assert outcomes["hello"]["ok"] > 0
    assert outcomes["certificate"]["BadCertificate(bad signature)"] > 0
    assert outcomes["stream"]["ProtocolViolation(truncated record)"] > 0
