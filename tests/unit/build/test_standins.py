"""The recording run's secrets: what `summon build --secret` gives, and TLS stand-ins."""

from __future__ import annotations

from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from summon.build.standins import STAND_IN_NAME, recording_secrets
from summon.targets.base import SecretFile

TLS_APP = {
    "secrets": ["tls.crt", "tls.key", "clients.crt", "api-token"],
    "tls": {"ports": [443], "cert": "tls.crt", "key": "tls.key", "client_ca": "clients.crt"},
}


def test_tls_secrets_get_a_throwaway_pair_and_the_rest_are_named(tmp_path: Path) -> None:
    run, lacking = recording_secrets(TLS_APP, (), tmp_path)
    assert lacking == ["api-token"]  # its shape is the app's: only the user can give one
    by_name = {s.name: s for s in run}
    assert set(by_name) == {"tls.crt", "tls.key", "clients.crt"}
    cert = x509.load_pem_x509_certificate(by_name["tls.crt"].read())
    assert STAND_IN_NAME in cert.subject.rfc4514_string()
    key = serialization.load_pem_private_key(by_name["tls.key"].read(), None)
    assert key.public_key().public_numbers() == cert.public_key().public_numbers()  # type: ignore[union-attr]
    assert by_name["clients.crt"].read() == by_name["tls.crt"].read()
    assert (tmp_path / "stand-in.key").stat().st_mode & 0o077 == 0


def test_what_the_user_gives_wins_and_nothing_is_made_without_need(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_bytes(b"t")
    crt = tmp_path / "mine.crt"
    crt.write_bytes(b"mine")
    given = (SecretFile("api-token", token), SecretFile("tls.crt", crt))
    run, lacking = recording_secrets(TLS_APP, given, tmp_path)
    assert lacking == []
    by_name = {s.name: s for s in run}
    assert by_name["tls.crt"].read() == b"mine"
    assert by_name["tls.key"].path == tmp_path / "stand-in.key"
    plain, none = recording_secrets({"secrets": []}, (), tmp_path / "nothing")
    assert plain == () and none == []
    assert not (tmp_path / "nothing").exists()
