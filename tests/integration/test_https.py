"""examples/https: examples/http served over TLS by the runtime, with secrets given at run time.

Built from the same app folder with examples/https/summon.toml (and variants of it made here:
the python backend, direct mode), served by curl checking the certificate against a test CA,
on the sandbox, the unix target, summon's own TCP/IP stack, and once in a VM. The key never
enters the image; a run without it is one line; an image holding a key is not pushed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from registry_server import LocalCA, make_ca
from summon_cli import EXAMPLES, Summon, free_port

INDEX = (EXAMPLES / "http" / "static" / "index.html").read_bytes()
MANIFEST = (EXAMPLES / "https" / "summon.toml").read_text()

needs_root = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("runc") is None, reason="the sandbox needs root and runc"
)


@dataclass
class Built:
    summon: Summon
    ca: LocalCA
    secrets: list[str]  # --secret flags for the server certificate and key


def variant(folder: Path, name: str, **changes: str) -> Path:
    """examples/https's manifest with some lines changed (backend, network...)."""
    text = MANIFEST.replace('name = "https"', f'name = "{name}"')
    for old, new in changes.items():
        text = text.replace(old, new)
    path = folder / f"{name}.toml"
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Built]:
    home = tmp_path_factory.mktemp("https")
    s = Summon(home)
    ca = make_ca(home / "pki")
    http = str(EXAMPLES / "http")
    r = s("build", http, "--manifest", str(EXAMPLES / "https" / "summon.toml"), "-t", "https")
    assert r.returncode == 0, r.stderr
    # The openssl backend's key loading used to try memfd_create, which the sandbox refuses:
    # the build then told the user to allow it, and every run said it was refused.
    assert "memfd_create" not in r.stdout + r.stderr
    py = variant(home, "https-py", **{'backend = "openssl"': 'backend = "python"'})
    s.ok("build", http, "--manifest", str(py), "-t", "https-py")
    direct = variant(home, "https-direct", **{'network = "socket"': 'network = "direct"'})
    s.ok("build", http, "--manifest", str(direct), "-t", "https-direct")
    flags = ["--secret", f"tls.crt={ca.cert}", "--secret", f"tls.key={ca.key}"]
    yield Built(s, ca, flags)


def fetch(ca: LocalCA, port: int, deadline: float = 30.0) -> bytes:
    end = time.monotonic() + deadline
    last = ""
    while time.monotonic() < end:
        curl = subprocess.run(
            ["curl", "-sf", "-m", "10", "--cacert", str(ca.ca), f"https://127.0.0.1:{port}/"],
            capture_output=True,
        )
        if curl.returncode == 0:
            return curl.stdout
        last = curl.stderr.decode(errors="replace")
        time.sleep(0.2)
    raise AssertionError(f"no HTTPS answer on {port}: {last}")


def serve_detached(built: Built, image: str, *extra: str) -> tuple[str, int]:
    port = free_port()
    out = built.summon.ok("run", "-d", image, "-p", f"{port}:80", *built.secrets, *extra)
    return out.strip().splitlines()[-1], port


@needs_root
@pytest.mark.parametrize("image", ["https", "https-py", "https-direct"])
def test_curl_gets_the_site_over_tls_in_the_sandbox(built: Built, image: str) -> None:
    instance, port = serve_detached(built, image, "--target", "sandbox")
    try:
        assert fetch(built.ca, port) == INDEX
        plain = subprocess.run(
            ["curl", "-s", "-m", "5", f"http://127.0.0.1:{port}/"], capture_output=True
        )
        assert INDEX not in plain.stdout  # port 80 of the app speaks only TLS
        assert "refused" not in built.summon.ok("logs", instance)
        # An HTTP/1.0 client offers ALPN http/1.0 only: it was refused (alert 120).
        http10 = subprocess.run(
            ["curl", "-sf", "-m", "10", "--http1.0", "--cacert", str(built.ca.ca),
             f"https://127.0.0.1:{port}/"],
            capture_output=True,
        )  # fmt: skip
        assert http10.stdout == INDEX, http10.stderr
    finally:
        built.summon("rm", "-f", instance)


def test_curl_gets_the_site_over_tls_on_the_unix_target(built: Built) -> None:
    instance, port = serve_detached(built, "https", "--target", "unix")
    try:
        assert fetch(built.ca, port) == INDEX
    finally:
        built.summon("rm", "-f", instance)


@needs_root
@pytest.mark.qemu
def test_curl_gets_the_site_over_tls_in_a_vm(built: Built) -> None:
    from summon import paths

    # The machine's kernel cache, not the test home's: a kernel build takes minutes.
    built.summon.env["XDG_CACHE_HOME"] = str(paths.cache_dir().parent)
    instance, port = serve_detached(built, "https", "--target", "qemu")
    try:
        assert fetch(built.ca, port, deadline=120) == INDEX
    finally:
        built.summon("rm", "-f", instance)


def test_a_run_without_the_key_is_one_line(built: Built) -> None:
    r = built.summon("run", "https", "--target", "unix")
    assert r.returncode == 2
    assert "needs the secrets tls.crt, tls.key: add --secret tls.crt=FILE" in r.stderr


def test_the_python_backend_image_carries_no_libssl_and_no_key(built: Built) -> None:
    doc = json.loads(built.summon.ok("inspect", "https-py", "--json"))
    sonames = {lib["soname"] for lib in doc["bom"]["libraries"]}
    assert not any(s.startswith(("libssl", "libcrypto")) for s in sonames), sonames
    modules = {m["name"] for m in doc["bom"]["modules"]}
    assert "ssl" not in modules and "_ssl" not in modules
    packages = {p["name"].lower(): p for p in doc["bom"]["packages"]}
    assert "lgpl" in packages["tlslite-ng"]["license"].lower()
    assert packages["tlslite-ng"]["license_files"], "the image carries tlslite-ng's licence"
    assert doc["private_keys"] == []
    openssl = json.loads(built.summon.ok("inspect", "https", "--json"))
    assert any(lib["soname"].startswith("libssl") for lib in openssl["bom"]["libraries"])
    assert openssl["private_keys"] == [] and openssl["tls"]["ports"] == [80]


def test_push_refuses_an_image_holding_a_private_key(built: Built, tmp_path: Path) -> None:
    app = tmp_path / "leaky"
    app.mkdir()
    (app / "app.py").write_text("print('hello')\n")
    (app / "summon.toml").write_text('name = "leaky"\nentry = "app.py"\ndata = ["conf"]\n')
    (app / "conf").mkdir()
    shutil.copy(built.ca.key, app / "conf" / "server.key")  # a key in baked-in data
    built.summon.ok("build", str(app), "-t", "leaky")
    r = built.summon("push", "leaky", "127.0.0.1:1/team/leaky:v1")
    assert r.returncode == 2
    assert "holds private keys: /data/conf/server.key (a PEM private key block)" in r.stderr
    forced = built.summon("push", "leaky", "127.0.0.1:1/team/leaky:v1", "--force")
    assert "holds private keys" not in forced.stderr  # it went on, to the (absent) registry
