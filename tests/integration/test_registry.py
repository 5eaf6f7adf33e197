"""summon push, pull, sign and verify against a real registry, and skopeo reading summon's images.

The registry is Debian's docker-registry (the CNCF distribution server), started per module on
127.0.0.1 with a throw-away storage folder: without auth, with htpasswd basic auth, and with
bearer tokens from a small token server in this file. Every error case checks the promises
(registry_checks.assert_one_error): one `summon: error:` line naming what is wrong, exit status
2. Tampered blobs and broken registries are in test_registry_failures.py.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import http.client
import http.server
import json
import os
import secrets
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID
from registry_checks import assert_one_error, key, layer_of, new_summon
from registry_server import REGISTRY_BIN, Registry, start_registry, stop_registry
from summon_cli import EXAMPLES, Summon, free_port, get

pytestmark = pytest.mark.skipif(
    not REGISTRY_BIN.exists(), reason="needs docker-registry (apt-get install docker-registry)"
)
needs_skopeo = pytest.mark.skipif(
    shutil.which("skopeo") is None, reason="needs skopeo (apt-get install skopeo)"
)
needs_htpasswd = pytest.mark.skipif(
    shutil.which("htpasswd") is None, reason="needs htpasswd (apt-get install apache2-utils)"
)

USER, PASSWORD = "alice", "s3cret-Pa55word"


@pytest.fixture(scope="module")
def basic_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    if shutil.which("htpasswd") is None:
        pytest.skip("needs htpasswd (apt-get install apache2-utils)")
    folder = tmp_path_factory.mktemp("basic-registry")
    htpasswd = folder / "htpasswd"
    line = subprocess.run(
        ["htpasswd", "-Bbn", USER, PASSWORD], capture_output=True, text=True, check=True
    ).stdout
    htpasswd.write_text(line)
    reg = start_registry(folder, {"htpasswd": {"realm": "summon-test", "path": str(htpasswd)}})
    yield reg
    stop_registry(reg)


# --- a token server for bearer auth (the distribution token spec, ES256 JWTs) ---


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class TokenServer:
    """Issues JWTs for USER:PASSWORD granting what each scope asks; 401 for anyone else."""

    service, issuer = "summon-test", "summon-test-issuer"

    def __init__(self, folder: Path) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "summon test token signer")])
        now = datetime.datetime.now(datetime.UTC)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        self.bundle = folder / "token-root.pem"
        self.bundle.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))
        self.requests = 0
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requests += 1
                expected = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
                if self.headers.get("Authorization") != expected:
                    self.send_response(401)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                from urllib.parse import parse_qs, urlsplit

                query = parse_qs(urlsplit(self.path).query)
                body = json.dumps({"token": server.token(query.get("scope", []))}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def token(self, scopes: list[str]) -> str:
        access = []
        for scope in scopes:
            kind, name, actions = scope.split(":")
            access.append({"type": kind, "name": name, "actions": actions.split(",")})
        now = int(time.time())
        header = {
            "typ": "JWT",
            "alg": "ES256",
            "x5c": [base64.b64encode(self.cert.public_bytes(serialization.Encoding.DER)).decode()],
        }
        claims = {
            "iss": self.issuer,
            "sub": USER,
            "aud": self.service,
            "exp": now + 300,
            "nbf": now - 10,
            "iat": now,
            "jti": secrets.token_hex(8),
            "access": access,
        }
        signing_input = (
            f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
        )
        r, s = decode_dss_signature(
            self.key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
        )
        return f"{signing_input}.{b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def token_registry(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Registry, TokenServer]]:
    folder = tmp_path_factory.mktemp("token-registry")
    tokens = TokenServer(folder)
    reg = start_registry(
        folder,
        {
            "token": {
                "realm": f"http://127.0.0.1:{tokens.port}/token",
                "service": TokenServer.service,
                "issuer": TokenServer.issuer,
                "rootcertbundle": str(tokens.bundle),
            }
        },
    )
    yield reg, tokens
    stop_registry(reg)
    tokens.close()


# --- the whole journey ---


def test_push_rmi_pull_verify_and_run(
    registry: Registry, shipper: Summon, tmp_path_factory: pytest.TempPathFactory
) -> None:
    s = new_summon(tmp_path_factory)
    s.ok("build", str(EXAMPLES / "http"), "-t", "http:v1")
    remote = f"{registry.host}/team/http:v1"
    assert "tagged" in s.ok("tag", "http:v1", remote)
    s.ok("rmi", "http:v1")
    signed = s.ok("sign", remote, "--key", key(shipper, "team.key"))
    assert "signed" in signed
    digest = s.digest(remote)
    out = s.ok("push", remote)
    assert f"pushed {remote} ({digest})" in out and "1 signature(s)" in out

    s.ok("rmi", remote)
    assert s.blobs() == set() and s.index() == []  # image and signature both gone

    out = s.ok("pull", remote)
    assert f"pulled {remote} ({digest})" in out and "1 signature(s)" in out
    assert s.digest(remote) == digest
    assert "verified" in s.ok("verify", remote, "--key", key(shipper, "team.pub"))

    # A second push sends nothing new; a second pull fetches nothing new.
    again = s("push", remote)
    assert again.returncode == 0 and "0 blobs sent" in again.stdout, again.stderr
    # Each blob's line names what it is (not a media type) and says it was there.
    for kind in ("root filesystem (erofs)", "file list", "bill of materials", "signature payload"):
        assert f"{kind} (" in again.stderr and "already there" in again.stderr, again.stderr
    assert "application/vnd" not in again.stderr, again.stderr
    assert "0 blobs fetched" in s.ok("pull", remote)

    port = free_port()
    proc = s.popen(
        "run",
        remote,
        "--target",
        "unix",
        "-p",
        f"{port}:80",
        "--verify-key",
        key(shipper, "team.pub"),
    )
    try:
        assert "hello from a unikernel" in get(f"http://127.0.0.1:{port}/", time.monotonic() + 30)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err

    if os.geteuid() != 0 or shutil.which("runc") is None:
        return  # the detached sandbox half needs root and runc
    # The pulled, verified image runs detached in the sandbox and is managed like a container.
    port = free_port()
    ident = s.ok(
        "run",
        "-d",
        remote,
        "--target",
        "sandbox",
        "-p",
        f"{port}:80",
        "--name",
        "shipped",
        "--verify-key",
        key(shipper, "team.pub"),
    ).strip()
    try:
        assert "hello from a unikernel" in get(f"http://127.0.0.1:{port}/", time.monotonic() + 30)
        (row,) = [r for r in json.loads(s.ok("ps", "--json")) if r["name"] == "shipped"]
        assert row["id"].startswith(ident[:12]) and row["status"] == "running"
        assert "GET / 200" in s.ok("logs", "shipped")
        (stats,) = json.loads(s.ok("stats", "--no-stream", "--json", "shipped"))
        assert stats["memory_bytes"] > 0
        s.ok("stop", "shipped")
        (row,) = [r for r in json.loads(s.ok("ps", "-a", "--json")) if r["name"] == "shipped"]
        assert row["status"] == "exited"
    finally:
        s("rm", "-f", "shipped")
    assert not [r for r in json.loads(s.ok("ps", "-a", "--json")) if r["name"] == "shipped"]


def test_wrong_key_or_unsigned_image_is_refused(
    registry: Registry, shipper: Summon, tmp_path_factory: pytest.TempPathFactory
) -> None:
    remote = f"{registry.host}/team/refused:v1"
    shipper.ok("tag", "http:built", remote)
    shipper.ok("sign", remote, "--key", key(shipper, "team.key"))
    shipper.ok("push", remote)

    s = new_summon(tmp_path_factory)
    s.ok("pull", remote)
    r = s("verify", remote, "--key", key(shipper, "stranger.pub"))
    assert_one_error(r, "none by this key", "stranger.pub")
    r = s("run", remote, "--target", "unix", "--verify-key", key(shipper, "stranger.pub"))
    assert_one_error(r, "none by this key", "(refused by --verify-key)")

    unsigned = new_summon(tmp_path_factory)
    assert "signature" not in unsigned.ok("pull", remote, "--no-signatures")
    r = unsigned("verify", remote, "--key", key(shipper, "team.pub"))
    assert_one_error(r, "is not signed")
    r = unsigned("run", remote, "--target", "unix", "--verify-key", key(shipper, "team.pub"))
    assert_one_error(r, "is not signed")
    # The same policy from config.toml, with no flag.
    config = unsigned.home / "config" / "summon" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text(f'verify_key = "{key(shipper, "team.pub")}"\n')
    # The refusal names the rule: a user who gave no flag learns where it comes from.
    r = unsigned("run", remote, "--target", "unix")
    assert_one_error(r, "is not signed", f"(refused by verify_key in {config})")
    assert list((unsigned.home / "state").glob("summon/instances/*")) == []  # nothing started


# --- skopeo reads and copies summon's images ---


@needs_skopeo
def test_skopeo_inspects_and_copies_summon_images(
    registry: Registry, shipper: Summon, tmp_path_factory: pytest.TempPathFactory
) -> None:
    digest = shipper.digest("http:built")
    # The local layout: skopeo names an image by its org.opencontainers.image.ref.name.
    r = subprocess.run(
        ["skopeo", "inspect", f"oci:{shipper.store}:http:built"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["Digest"] == digest
    # A registry-qualified local name works too (it holds ':' and '/').
    remote = f"{registry.host}/team/skopeo:v1"
    shipper.ok("tag", "http:built", remote)
    r = subprocess.run(
        ["skopeo", "inspect", f"oci:{shipper.store}:{remote}"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr

    # A summon-pushed image, read by skopeo from the registry.
    shipper.ok("push", remote)
    r = subprocess.run(
        ["skopeo", "inspect", "--tls-verify=false", f"docker://{remote}"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    seen = json.loads(r.stdout)
    assert seen["Digest"] == digest and seen["Os"] == "linux" and len(seen["Layers"]) == 1

    # skopeo copies the whole index (both manifests) from the layout to the registry, and
    # summon pulls and runs what skopeo pushed. skopeo 1.9 re-encodes the index itself (Go's
    # field order, and it drops descriptors' artifactType), so the index digest changes and
    # --preserve-digests is refused; the manifests and blobs under it arrive byte for byte.
    copied = f"{registry.host}/skopeo/http:copied"
    r = subprocess.run(
        [
            "skopeo",
            "copy",
            "--all",
            f"oci:{shipper.store}:http:built",
            f"docker://{copied}",
            "--dest-tls-verify=false",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    s = new_summon(tmp_path_factory)
    s.ok("pull", copied)
    ours = json.loads(shipper.ok("inspect", "http:built", "--json"))["index"]["manifests"]
    theirs = json.loads(s.ok("inspect", copied, "--json"))["index"]["manifests"]
    assert [m["digest"] for m in theirs] == [m["digest"] for m in ours]
    assert layer_of(s, copied) == layer_of(shipper, "http:built")


# --- auth ---


@needs_htpasswd
def test_basic_auth(
    basic_registry: Registry, shipper: Summon, tmp_path_factory: pytest.TempPathFactory
) -> None:
    remote = f"{basic_registry.host}/team/http:v1"
    shipper.ok("tag", "http:built", remote)
    r = shipper("push", remote)
    assert_one_error(r, "asks for a login", "no credentials")
    wrong = shipper.auth_file(basic_registry.host, USER, "not-the-password")
    r = shipper("push", remote, env=wrong)
    line = assert_one_error(r, "refused the credentials from", "auth.json")
    assert "not-the-password" not in r.stderr + r.stdout and "not-the-password" not in line

    right = shipper.auth_file(basic_registry.host, USER, PASSWORD)
    shipper.ok("push", remote, env=right)
    s = new_summon(tmp_path_factory)
    s.ok("pull", remote, env=right)
    assert s.digest(remote) == shipper.digest("http:built")
    assert PASSWORD not in s("pull", remote, env=right).stderr


def test_bearer_token_auth(
    token_registry: tuple[Registry, TokenServer],
    shipper: Summon,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    reg, tokens = token_registry
    remote = f"{reg.host}/team/http:v1"
    shipper.ok("tag", "http:built", remote)
    shipper.ok("sign", remote, "--key", key(shipper, "team.key"))
    assert_one_error(shipper("push", remote), "asks for a login")

    # Docker's ~/.docker/config.json, found through HOME.
    docker = shipper.home / ".docker" / "config.json"
    docker.parent.mkdir(exist_ok=True)
    token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    try:
        docker.write_text(json.dumps({"auths": {f"http://{reg.host}": {"auth": "bad!"}}}))
        assert_one_error(shipper("push", remote), "not base64", str(docker))
        docker.write_text(json.dumps({"auths": {reg.host: {"auth": token}}}))
        before = tokens.requests
        out = shipper.ok("push", remote)
        assert "1 signature(s)" in out
        assert tokens.requests > before
        s = new_summon(tmp_path_factory)
        (s.home / ".docker").mkdir()
        shutil.copy(docker, s.home / ".docker" / "config.json")
        out = s.ok("pull", remote)
        assert "1 signature(s)" in out
        s.ok("verify", remote, "--key", key(shipper, "team.pub"))
        wrong = base64.b64encode(f"{USER}:wrong".encode()).decode()
        (s.home / ".docker" / "config.json").write_text(
            json.dumps({"auths": {reg.host: {"auth": wrong}}})
        )
        assert_one_error(s("pull", remote), "refused the credentials")
    finally:
        docker.unlink(missing_ok=True)


# --- the Python API: chunked uploads ---


def test_chunked_upload_round_trip(registry: Registry, shipper: Summon, tmp_path: Path) -> None:
    from summon.store import Store
    from summon.store.reference import RemoteRef
    from summon.store.registry import Transfer
    from summon.store.sync import pull, push

    src = Store(shipper.store)
    remote = RemoteRef.parse(f"{registry.host}/team/chunked:v1")
    seen: list[Transfer] = []
    result = push(src, "http:built", remote, chunk=256 << 10, progress=seen.append)
    layer = max((t for t in seen if t.state == "done"), key=lambda t: t.total)
    steps = [t for t in seen if t.digest == layer.digest and t.state == "progress"]
    assert len(steps) == -(-layer.total // (256 << 10))  # one PATCH per chunk
    dst = Store(tmp_path / "store")
    pulled = pull(dst, remote)
    assert pulled.digest == result.digest == src.resolve("http:built")[1].digest
    got = dst.reachable()
    assert layer.digest in got and len(got) >= 6 and got <= src.reachable()
    for digest in got:
        assert hashlib.sha256(dst.read(digest)).hexdigest() == digest[7:]
    # By digest: nothing new to fetch, and a local name from the digest.
    by_digest = pull(dst, RemoteRef.parse(f"{registry.host}/team/chunked@{result.digest}"))
    assert by_digest.blobs_fetched == 0
    assert by_digest.local == f"{registry.host}/team/chunked:{result.digest[7:19]}"
    assert dst.resolve(by_digest.local)[1].digest == result.digest
