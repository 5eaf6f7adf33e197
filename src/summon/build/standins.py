"""The secrets the build's recording run gets: those given to `summon build --secret`, and
throwaway stand-ins for the TLS certificate and key the runtime terminates with.

An image that declares secrets cannot start without them, so neither can its recording run
(build/syscalls.py). Secrets are never part of a build's inputs, so the run gets either what
the user hands `summon build --secret NAME=FILE` for that run alone, or, for the secrets the
manifest's [tls] table names (cert, key, client_ca), a self-signed certificate and key made
now and deleted with the run. Any other declared secret has a shape only the app knows: with
none given, the run is not made and the image keeps the static allowlist (said in a warning
naming the flag). Whatever the run gets is delivered as at run time (a read-only tmpfs), so
nothing of it can reach the image.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from summon.targets.base import SecretFile

STAND_IN_NAME = "summon-build stand-in (not a secret)"


def recording_secrets(
    app_config: Mapping[str, Any], given: tuple[SecretFile, ...], folder: Path
) -> tuple[tuple[SecretFile, ...], list[str]]:
    """(secrets for the recording run, declared secrets it lacks); stand-ins go in folder."""
    declared = [str(n) for n in app_config.get("secrets") or []]
    have = {s.name for s in given}
    tls = app_config.get("tls") or {}
    key_name = str(tls.get("key") or "")
    tls_names = {str(tls.get(k) or "") for k in ("cert", "key", "client_ca")} - {""}
    need = [n for n in declared if n not in have and n in tls_names]
    made: list[SecretFile] = []
    if need:
        cert_path, key_path = _self_signed(folder)
        made = [SecretFile(n, key_path if n == key_name else cert_path) for n in need]
    lacking = [n for n in declared if n not in have and n not in tls_names]
    return (*given, *made), lacking


def _self_signed(folder: Path) -> tuple[Path, Path]:
    """A throwaway self-signed certificate (also usable as a client CA) and its key."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, STAND_IN_NAME)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                ]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "stand-in.crt", folder / "stand-in.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    return cert_path, key_path
