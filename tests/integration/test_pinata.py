"""examples/pinata under attack: every listed attack fails with its reason logged, the secret
never reaches an attacker, and a peer that does hold a certificate from the trust anchor gets
it (the control that shows the harness would see a leak).

The Piñata runs detached in the sandbox, its summon inside a network namespace this module
makes ("host"), joined by a veth pair to another ("attacker"): the attacker at 10.213.0.2
reaches the Piñata at 10.213.0.1, and the Piñata sees the attacker's real address (its
listening sockets are handed to it, not forwarded) and connects back to it on port 40001
through its egress rule. Then through the gateway, on the machine's loopback. The test CA
plays the trust anchor: here its key is kept, to issue the controls' certificates.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from gateway_run import run_gateway
from summon_cli import EXAMPLES, Summon, needs_sandbox

sys.path.insert(0, str(Path(__file__).parents[1] / "unit" / "tls"))
from tls_pki import CLIENT, DAY, NOW, SERVER, Issued, issue

pytestmark = [needs_sandbox, pytest.mark.slow]

HOST_NS, ATTACKER_NS = f"smn-pin-h-{os.getpid()}", f"smn-pin-a-{os.getpid()}"
PINATA, ATTACKER = "10.213.0.1", "10.213.0.2"  # inside the two namespaces only
ATTACK = Path(__file__).parent / "pinata_attacker.py"
PORTS = ("10000", "10001", "10002", "8080")


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@pytest.fixture(scope="module")
def namespaces() -> Iterator[None]:
    if shutil.which("ip") is None or shutil.which("slirp4netns") is None:
        pytest.skip("needs iproute2 and slirp4netns")
    ip("netns", "add", HOST_NS)
    try:
        ip("netns", "add", ATTACKER_NS)
        ip("-n", HOST_NS, "link", "add", "vh", "type", "veth", "peer", "name", "va",
           "netns", ATTACKER_NS)  # fmt: skip
        for ns, dev, addr in ((HOST_NS, "vh", PINATA), (ATTACKER_NS, "va", ATTACKER)):
            ip("-n", ns, "addr", "add", f"{addr}/24", "dev", dev)
            ip("-n", ns, "link", "set", dev, "up")
            ip("-n", ns, "link", "set", "lo", "up")
        yield
    finally:
        subprocess.run(["ip", "netns", "del", ATTACKER_NS], capture_output=True, check=False)
        subprocess.run(["ip", "netns", "del", HOST_NS], capture_output=True, check=False)


@dataclass
class Kit:
    summon: Summon
    folder: Path  # certificates and keys, NAME.crt / NAME.key
    bounty: bytes
    secrets: list[str]  # the --secret flags of a run (and the build's recording run)

    def pem(self, name: str) -> dict[str, str]:
        return {"cert": str(self.folder / f"{name}.crt"), "key": str(self.folder / f"{name}.key")}


def write(folder: Path, name: str, issued: Issued) -> None:
    (folder / f"{name}.crt").write_bytes(issued.cert_pem)
    (folder / f"{name}.key").write_bytes(issued.key_pem)


@pytest.fixture(scope="module")
def kit(tmp_path_factory: pytest.TempPathFactory) -> Kit:
    home = tmp_path_factory.mktemp("pinata")
    folder = home / "pki"
    folder.mkdir()
    anchor = issue("Piñata test anchor", ca=True, key="ec")
    other = issue("another CA", ca=True, key="ec")
    both = (*SERVER, *CLIENT)
    certs = {
        "pinata": issue("pinata", issuer=anchor, key="ec", ips=(PINATA, "127.0.0.1"), eku=both),
        "good-client": issue("holder", issuer=anchor, key="ec", eku=CLIENT),
        "good-server": issue("holder", issuer=anchor, key="ec", ips=(ATTACKER,), eku=SERVER),
        "expired": issue(
            "late",
            issuer=anchor,
            key="ec",
            eku=both,
            ips=(ATTACKER,),
            not_before=NOW - 60 * DAY,
            not_after=NOW - DAY,
        ),
        "other-ca": issue("stranger", issuer=other, key="ec", eku=both, ips=(ATTACKER,)),
        "self-signed": issue("loner", ca=None, key="ec", ips=(ATTACKER,)),
        "wrong-host": issue("elsewhere", issuer=anchor, key="ec", ips=("10.9.9.9",), eku=both),
    }
    for name, issued in certs.items():
        write(folder, name, issued)
    (folder / "anchor.crt").write_bytes(anchor.leaf_pem)
    bounty = secrets.token_hex(16).encode()
    (folder / "bounty").write_bytes(bounty)
    flags = [
        "--secret", f"pinata.crt={folder / 'pinata.crt'}",
        "--secret", f"pinata.key={folder / 'pinata.key'}",
        "--secret", f"pinata-ca.crt={folder / 'anchor.crt'}",
    ]  # fmt: skip
    s = Summon(home)
    # The example as shipped, with the egress rule its connect-back needs on this network.
    app = home / "app"
    shutil.copytree(EXAMPLES / "pinata" / "app", app, ignore=shutil.ignore_patterns("__py*"))
    manifest = app / "pyproject.toml"
    text = manifest.read_text().replace(
        'network = "socket"\n', f'network = "socket"\negress = ["{ATTACKER}/32:40001"]\n'
    )
    manifest.write_text(text)
    s.ok("build", str(app), "-t", "pinata:test", *flags)
    return Kit(s, folder, bounty, [*flags, "--secret", f"bounty={folder / 'bounty'}"])


def in_ns(ns: str, argv: list[str], env: dict[str, str] | None = None,
          timeout: float = 120) -> subprocess.CompletedProcess[str]:  # fmt: skip
    return subprocess.run(
        ["nsenter", f"--net=/run/netns/{ns}", *argv],
        env=env, capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip


def attack(mode: str, port: int, host: str = PINATA, ns: str | None = ATTACKER_NS,
           **opts: Any) -> dict[str, Any]:  # fmt: skip
    argv = [sys.executable, str(ATTACK), mode, host, str(port), json.dumps(opts)]
    r = in_ns(ns, argv) if ns else subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    result: dict[str, Any] = json.loads(r.stdout)
    result["got"] = base64.b64decode(result["got"])
    return result


def openssl_client(port: int, *extra: str) -> str:
    r = in_ns(
        ATTACKER_NS,
        ["openssl", "s_client", "-connect", f"{PINATA}:{port}", "-ign_eof", *extra],
        timeout=60,
    )
    return r.stdout + r.stderr


def gateway_counts(address: str, until_port: str) -> dict[str, Any]:
    """The status page's counts once until_port has one: an attempt is counted when it ends,
    and a connect-back ends after the attacker's side has given up on it."""
    deadline = time.monotonic() + 20
    while True:
        page = subprocess.run(
            ["curl", "-sf", "-m", "10", f"http://{address}:8080/status.json"],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        counts: dict[str, Any] = json.loads(page.stdout)["ports"]
        if until_port in counts or time.monotonic() > deadline:
            return counts
        time.sleep(0.5)


def status(kit: Kit) -> dict[str, Any]:
    r = in_ns(ATTACKER_NS, ["curl", "-sf", "-m", "10", f"http://{PINATA}:8080/status.json"])
    assert r.returncode == 0, r.stderr
    result: dict[str, Any] = json.loads(r.stdout)
    return result


@pytest.fixture(scope="module")
def pinata(kit: Kit, namespaces: None) -> Iterator[str]:
    name = f"pinata-{os.getpid()}"
    ports = [f"{PINATA}:{p}:{p}" for p in PORTS]
    flags = [arg for p in ports for arg in ("-p", p)]
    r = in_ns(HOST_NS, kit.summon.argv("run", "-d", "pinata:test", "--name", name, *flags,
                                       *kit.secrets), env=kit.summon.env)  # fmt: skip
    assert r.returncode == 0, r.stderr
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            probe = in_ns(ATTACKER_NS, ["curl", "-sf", "-m", "2", f"http://{PINATA}:8080/"])
            if probe.returncode == 0:
                break
            time.sleep(0.3)
        yield name
    finally:
        kit.summon("rm", "-f", name)


# (attack, what the Piñata logs as its outcome): the whole list of issue 13, on every port.
ATTACKS: list[tuple[str, str, int, dict[str, Any], str]] = [
    ("no client certificate", "client", 10000, {}, "refused: no certificate"),
    ("a self-signed certificate", "client", 10000, {"pem": "self-signed"}, "refused: self-signed"),
    ("a certificate from another CA", "client", 10000, {"pem": "other-ca"}, "refused: unknown CA"),
    ("an expired certificate", "client", 10000, {"pem": "expired"}, "refused: expired"),
    ("TLS 1.0 offered", "client", 10000, {"version": "1.0"}, "refused: protocol version refused"),
    ("a second ClientHello", "rehello", 10000, {}, "refused: unexpected message"),
    ("random bytes", "raw", 10000, {"hex": secrets.token_hex(64)}, "refused: bad record"),
    (
        "an oversized record",
        "raw",
        10000,
        {"hex": "160303ffff" + "00" * 64},
        "refused: oversized record",
    ),
    (
        "a truncated record",
        "raw",
        10000,
        {"hex": "1603030100" + "01" * 40},
        "refused: truncated record",
    ),
    ("a self-signed server", "server", 10002, {"pem": "self-signed"}, "refused: self-signed"),
    ("a server from another CA", "server", 10002, {"pem": "other-ca"}, "refused: unknown CA"),
    (
        "a server with an expired certificate",
        "server",
        10002,
        {"pem": "expired"},
        "refused: expired",
    ),
    (
        "a server certificate for another address",
        "server",
        10002,
        {"pem": "wrong-host"},
        "refused: hostname mismatch",
    ),
    (
        "a connect-back to a self-signed server",
        "callback",
        10001,
        {"pem": "self-signed"},
        "refused: self-signed",
    ),
    (
        "a connect-back to another address's certificate",
        "callback",
        10001,
        {"pem": "wrong-host"},
        "refused: hostname mismatch",
    ),
]


def run_attack(kit: Kit, mode: str, port: int, opts: dict[str, Any]) -> dict[str, Any]:
    opts = dict(opts)
    pem = opts.pop("pem", None)
    if pem is not None:
        opts.update(kit.pem(pem))
    return attack(mode, port, **opts)


@pytest.mark.parametrize(("what", "mode", "port", "opts", "outcome"), ATTACKS,
                         ids=[a[0] for a in ATTACKS])  # fmt: skip
def test_an_attack_fails_with_its_reason_logged(
    kit: Kit, pinata: str, what: str, mode: str, port: int, opts: dict[str, Any], outcome: str
) -> None:
    before = status(kit)["ports"].get(str(port), {}).get(outcome, 0)
    result = run_attack(kit, mode, port, opts)
    assert kit.bounty not in result["got"], what
    assert status(kit)["ports"][str(port)].get(outcome, 0) == before + 1, (what, status(kit))
    logs = kit.summon.ok("logs", pinata)
    assert f"pinata: {port} from {ATTACKER}:" in logs
    assert f": {outcome} (" in logs, logs[-2000:]
    assert status(kit)["secrets_given"] == 0


def test_openssl_s_client_without_a_certificate_gets_nothing(kit: Kit, pinata: str) -> None:
    out = openssl_client(10000)
    assert kit.bounty.decode() not in out
    assert "alert" in out.lower()  # the Piñata's fatal alert, as openssl reports it


def test_a_slowloris_handshake_times_out(kit: Kit, pinata: str) -> None:
    # A ClientHello's first bytes, one a second: the whole handshake must end in 10 s.
    started = time.monotonic()
    result = attack("raw", 10000, hex="16030100c8" + "01" * 30, drip=1.0)
    assert time.monotonic() - started < 25
    assert kit.bounty not in result["got"]
    assert status(kit)["ports"]["10000"].get("refused: handshake timeout", 0) >= 1


def test_the_holder_of_an_anchored_certificate_gets_the_secret_on_every_port(
    kit: Kit, pinata: str
) -> None:
    """The controls: what the attacks lack is all that stands between them and the secret,
    and the harness sees the secret when it does arrive (connect-back included: the Piñata
    saw the peer's real address and its egress rule let it reach it)."""
    assert kit.bounty in run_attack(kit, "client", 10000, {"pem": "good-client"})["got"]
    assert kit.bounty in run_attack(kit, "server", 10002, {"pem": "good-server"})["got"]
    assert kit.bounty in run_attack(kit, "callback", 10001, {"pem": "good-server"})["got"]
    counts = status(kit)
    assert counts["secrets_given"] == 3
    for port in ("10000", "10001", "10002"):
        assert counts["ports"][port]["gave the secret"] == 1


def test_through_the_gateway_attacks_fail_and_the_holder_gets_the_secret(kit: Kit) -> None:
    """Summoned on demand: the gateway hands each connection to the sandboxed Piñata by fd,
    its secrets given by the service's config. On the machine's loopback, where the peer is
    127.0.0.1: the connect-back finds no one (its egress rule names the attacker's network
    only), and says so."""
    given = ", ".join(f'"{flag}"' for flag in kit.secrets[1::2])
    services = f"""
[[service]]
name = "pinata"
image = "pinata:test"
ports = [10000, 10001, 10002, 8080]
secrets = [{given}]
idle_timeout = "120s"
boot_timeout = "30s"
"""
    with run_gateway(kit.summon, services) as gateway:
        address = gateway.address("pinata")
        refused = attack("client", 10000, host=address, ns=None)
        stranger = attack("server", 10002, host=address, ns=None, **kit.pem("other-ca"))
        knock = attack("callback", 10001, host=address, ns=None, wait=8, **kit.pem("good-server"))
        holder = attack("client", 10000, host=address, ns=None, **kit.pem("good-client"))
        for result in (refused, stranger, knock):
            assert kit.bounty not in result["got"]
        assert kit.bounty in holder["got"]
        counts = gateway_counts(address, until_port="10001")
        assert counts["10000"] == {"refused: no certificate": 1, "gave the secret": 1}
        assert counts["10002"] == {"refused: unknown CA": 1}
        assert counts["10001"] == {"no answer": 1}
        assert gateway.status()["pinata"]["state"] == "up"
