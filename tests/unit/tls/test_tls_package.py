"""summon.tls's promises as a package: what each backend imports, the state table and its
docs, the device's configuration errors, and the Secrets device."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from tls_pki import PKI

from summon.devices import TLS, InvalidSecretName, MissingSecret, Secrets
from summon.secrets import FolderSecrets
from summon.tls import errors as e
from summon.tls import state as st
from summon.tls.device import TLSDevice

SRC = str(Path(__file__).resolve().parents[3] / "src")
DOCS = Path(__file__).resolve().parents[3] / "docs" / "tls-states.md"

# A meta path finder that refuses ssl, _ssl and _hashlib (OpenSSL's libcrypto behind hashlib):
# an image built with tls = "python" has none of them.
BLOCK = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name in ("ssl", "_ssl", "_hashlib"):
            raise ImportError(f"{name} is not in this image")
sys.meta_path.insert(0, Block())
"""

HANDSHAKE = """
import sys
sys.path.insert(0, {tests!r})
from tls_pair import Pair, device
p = Pair(device({folder!r}, "python").client(ca="ca.crt").session("localhost"),
         device({folder!r}, "python").server().session())
p.handshake()
p.client.send(b"hello"); p.pump()
assert p.server_events[-1].data == b"hello", p.server_events
maps = open("/proc/self/maps").read()
assert "libssl" not in maps and "libcrypto" not in maps, "OpenSSL was loaded"
assert not {{"ssl", "_ssl", "_hashlib"}} & set(sys.modules)
print("ok", p.server.info.version)
"""


def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": SRC},
        timeout=120,
    )


def test_the_python_backend_runs_a_handshake_without_ssl_or_libcrypto(pki: PKI) -> None:
    code = BLOCK + HANDSHAKE.format(tests=str(Path(__file__).parent), folder=str(pki.folder))
    result = _run(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok TLSv1.3")


def test_a_blocked_ssl_really_is_blocked() -> None:
    result = _run(BLOCK + "import ssl")
    assert result.returncode != 0 and "ssl is not in this image" in result.stderr


def test_the_openssl_backend_does_not_import_tlslite() -> None:
    code = (
        "import sys, summon.tls.device, summon.tls.openssl_backend, summon.tls.streams\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tlslite', 'ecdsa')))"
    )
    result = _run(code)
    assert result.stdout.strip() == "[]", result.stderr


def test_the_image_side_modules_import_only_the_stdlib_and_their_backend() -> None:
    code = (
        "import sys; before = set(sys.modules)\n"
        "import summon.tls.device, summon.tls.streams, summon.tls.openssl_backend\n"
        "import summon.tls.python_backend, summon.secrets\n"
        "print('\\n'.join(sorted(set(sys.modules) - before)))"
    )
    result = _run(code)
    new = set(result.stdout.split())
    assert new, result.stderr
    allowed_roots = {"summon", "tlslite", "ecdsa", "six"}
    foreign = {m for m in new if m.split(".")[0] not in sys.stdlib_module_names | allowed_roots}
    assert not foreign, foreign
    # typing and dataclasses stay out (20-30 ms each at every start).
    assert not {"typing", "dataclasses"} & new


def test_importing_the_device_loads_no_backend() -> None:
    code = "import sys, summon.tls.device; print(sorted(m for m in sys.modules if 'ssl' in m))"
    result = _run(code)
    assert result.stdout.strip() == "[]", result.stdout + result.stderr


def test_every_state_is_reachable_and_docs_come_from_the_table() -> None:
    seen = {st.START}
    frontier = [st.START]
    while frontier:
        state = frontier.pop()
        for (src, _), (dst, _) in st.TRANSITIONS.items():
            if src == state and dst not in seen:
                seen.add(dst)
                frontier.append(dst)
    assert seen == set(st.STATES)
    assert DOCS.read_text() == st.describe(), (
        "regenerate: python3 -W ignore -m summon.tls.state > docs/tls-states.md"
    )
    with pytest.raises(st.TransitionError):
        st.transition(st.CLOSED, st.HANDSHAKE_DONE)


def test_only_the_table_assigns_a_session_state() -> None:
    src = (Path(SRC) / "summon" / "tls" / "session.py").read_text()
    assignments = re.findall(r"self\.state\s*=(?!=)", src)
    assert len(assignments) == 2  # the initial state and _move()


# -- configuration -------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["openssl", "python"])
def test_configuration_errors_name_what_is_wrong(pki: PKI, backend: str) -> None:
    tls = TLSDevice(FolderSecrets(str(pki.folder)), backend)
    assert isinstance(tls, TLS) and tls.backend == backend
    with pytest.raises(MissingSecret) as missing:
        tls.server(cert="nope.crt")
    assert "summon run --secret nope.crt=FILE" in str(missing.value)
    with pytest.raises(e.TLSConfigError, match="does not match"):
        tls.server(cert="server.crt", key="client.key")
    with pytest.raises(e.TLSConfigError, match=r"TLS 1\.0 and 1\.1 are refused"):
        tls.server(versions=["1.1"])
    with pytest.raises(e.TLSConfigError, match="needs client_ca"):
        tls.server(client_auth="required")
    with pytest.raises(e.TLSConfigError, match="client_auth"):
        tls.server(client_auth="sometimes")
    with pytest.raises(e.TLSConfigError):
        tls.server(cert="ca.crt", key="ca.crt")  # a certificate where the key should be
    with pytest.raises(e.TLSConfigError):
        TLSDevice(None, "gnutls")
    assert tls.server() is tls.server()  # contexts are made once per configuration


@pytest.mark.parametrize("backend", ["openssl", "python"])
@pytest.mark.parametrize("form", ["pkcs8", "traditional"])
def test_an_encrypted_key_is_one_clear_error_never_a_passphrase_prompt(
    pki: PKI, tmp_path: Path, backend: str, form: str
) -> None:
    # Before: OpenSSL asked "Enter PEM pass phrase:" on the app's terminal (it waited there,
    # or raised OSError EINVAL without one); tlslite-ng said "Not a PEM private key file".
    from cryptography.hazmat.primitives import serialization

    fmt = (
        serialization.PrivateFormat.PKCS8
        if form == "pkcs8"
        else (serialization.PrivateFormat.TraditionalOpenSSL)
    )
    encrypted = pki["server"].key.private_bytes(
        serialization.Encoding.PEM, fmt, serialization.BestAvailableEncryption(b"secret")
    )
    (tmp_path / "tls.crt").write_bytes(pki["server"].cert_pem)
    (tmp_path / "tls.key").write_bytes(encrypted)
    tls = TLSDevice(FolderSecrets(str(tmp_path)), backend)
    with pytest.raises(e.TLSConfigError, match="encrypted with a passphrase"):
        tls.server()
    with pytest.raises(e.TLSConfigError, match="encrypted with a passphrase"):
        tls.client(ca=pki["ca"].cert_pem, cert="tls.crt", key="tls.key")


def test_the_python_client_needs_trust_anchors(pki: PKI) -> None:
    tls = TLSDevice(FolderSecrets(str(pki.folder)), "python")
    with pytest.raises(e.TLSConfigError, match="no system trust store"):
        tls.client()
    assert tls.client(ca=pki["ca"].cert_pem) is not None  # PEM bytes work as well as names


# -- Secrets -------------------------------------------------------------------------------


def test_folder_secrets_reads_names_and_refuses_paths(tmp_path: Path) -> None:
    (tmp_path / "api-token").write_bytes(b"s3cret\n")
    (tmp_path / "tls.key").write_bytes(b"KEY")
    (tmp_path / "sub").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "api-token")
    secrets = FolderSecrets(str(tmp_path))
    assert isinstance(secrets, Secrets)
    assert secrets.get("api-token") == b"s3cret\n"
    assert secrets.names() == ["api-token", "tls.key"]
    for bad in ["", ".", "..", "../etc/passwd", "a/b", "a\\b", "x\0y"]:
        with pytest.raises(InvalidSecretName):
            secrets.get(bad)
    with pytest.raises(InvalidSecretName, match="symbolic link"):
        secrets.get("link")
    with pytest.raises(MissingSecret) as err:
        secrets.get("db-password")
    assert str(err.value) == (
        "secret 'db-password' was not given to this instance: pass it with "
        '`summon run --secret db-password=FILE` (or secrets = ["db-password"] in a gateway '
        "service)"
    )
    with pytest.raises(MissingSecret):
        secrets.get("sub")
    assert "s3cret" not in repr(secrets)
    (tmp_path / "api-token").write_bytes(b"rotated")
    assert secrets.get("api-token") == b"rotated"  # read each time, never cached


def test_a_missing_folder_holds_no_secrets(tmp_path: Path) -> None:
    secrets = FolderSecrets(str(tmp_path / "absent"))
    assert secrets.names() == []
    with pytest.raises(MissingSecret):
        secrets.get("tls.key")
