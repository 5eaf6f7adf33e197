"""`summon gateway` in a subprocess for integration tests: its config, status, DNS, the end.

run_gateway(summon, services) starts one on throw-away DNS and status ports with the given
[[service]] tables and stops it (SIGTERM) when the block ends; Running answers what a test
asks of it.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dns.resolver
from summon_cli import ROOT, Summon, free_port


class Running:
    def __init__(
        self,
        summon: Summon,
        proc: subprocess.Popen[bytes],
        dns_port: int,
        status_port: int,
        log: Path,
    ) -> None:
        self.summon, self.proc, self.dns_port, self.status_port, self.log = (
            summon, proc, dns_port, status_port, log)  # fmt: skip

    def status(self) -> dict[str, dict[str, Any]]:
        conn = http.client.HTTPConnection("127.0.0.1", self.status_port, timeout=5)
        conn.request("GET", "/status.json")
        doc = json.loads(conn.getresponse().read())
        conn.close()
        return {s["name"]: s for s in doc["services"]}

    def path(self, path: str) -> str:
        conn = http.client.HTTPConnection("127.0.0.1", self.status_port, timeout=5)
        conn.request("GET", path)
        body = conn.getresponse().read().decode()
        conn.close()
        return body

    def address(self, name: str) -> str:
        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers = ["127.0.0.1"]
        resolver.port = self.dns_port
        resolver.lifetime = 5
        answer = resolver.resolve(f"{name}.summon.test", "A")
        return str(answer[0].address)

    def containers(self) -> list[str]:
        root = self.summon.home / "state" / "summon" / "runc"
        if not root.exists():
            return []
        out = subprocess.run(
            ["runc", "--root", str(root), "list", "-q"], capture_output=True, text=True, check=True
        ).stdout
        return out.split()


def get_page(address: str, timeout: float = 10) -> bytes:
    conn = http.client.HTTPConnection(address, 80, timeout=timeout)
    try:
        conn.request("GET", "/")
        response = conn.getresponse()
        assert response.status == 200
        return response.read()
    finally:
        conn.close()


def wait_for(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@contextlib.contextmanager
def run_gateway(summon: Summon, services: str) -> Iterator[Running]:
    """`summon gateway` on services (TOML [[service]] tables) until the block ends."""
    dns_port, status_port = free_port(), free_port()
    config = summon.home / "gateway.toml"
    config.write_text(f"""
[gateway]
dns = "127.0.0.1:{dns_port}"
zone = "summon.test."
status = "127.0.0.1:{status_port}"
{services}""")
    log = summon.home / "gateway.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            summon.argv("gateway", "--config", str(config), "-v"),
            env=summon.env,
            cwd=ROOT,
            stdout=out,
            stderr=out,
        )
    running = Running(summon, proc, dns_port, status_port, log)
    try:

        def ready() -> bool:
            assert proc.poll() is None, log.read_text()
            try:
                running.status()
                return True
            except OSError:
                return False

        wait_for(ready, 20, "the gateway's status server")
        yield running
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
