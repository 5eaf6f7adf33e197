"""Each handed connection's client address: sent to an app whose image says it takes it
("A"), and only to such an app (an older image's runtime would close the connection).

The app is the runtime's real SocketStack (test_gateway_handoff's AppLauncher), with
getpeername refused as the sandbox's profile refuses it: the address it sees came with the
connection.
"""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path
from types import SimpleNamespace
from typing import Any, ClassVar

import pytest
from fakes import FakeInstance, FakeTarget
from test_gateway_handoff import AppLauncher, served
from test_gateway_service import run

from summon import manifest
from summon.build.records import image_config
from summon.gateway.config import ServiceConfig
from summon.gateway.handoff import Channel
from summon.gateway.server import ImageLauncher
from summon.instances import scratch
from summon.runtime import handoff
from summon.store.layout import Descriptor
from summon.targets.base import (
    HANDOFF,
    HANDOFF_LABEL,
    SYSCALLS_LABEL,
    Instance,
    PortForward,
    RunSpec,
)

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


def refused_getpeername(self: socket.socket) -> object:
    """getpeername as the sandbox's seccomp profile answers it (no rule for it)."""
    raise PermissionError(1, "Operation not permitted")


async def request_from(address: tuple[str, int]) -> tuple[tuple[str, int], bytes]:
    """GET / on address from a client socket of our own: (its address, the answer)."""
    client = socket.create_connection(address)
    name = client.getsockname()
    reader, writer = await asyncio.open_connection(sock=client)
    writer.write(b"GET / HTTP/1.0\r\n\r\n")
    answer = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    return name, answer


@pytest.mark.parametrize(("version", "told"), [(2, True), (1, False)])
def test_an_app_that_takes_addresses_sees_each_clients(
    monkeypatch: pytest.MonkeyPatch, version: int, told: bool
) -> None:
    """Cold (held through the boot, then sent) and warm (sent at once): the app sees the
    client's own address and port. An app of version 1 gets "C" and asks the kernel, as
    before; refused, it sees none."""
    monkeypatch.setattr(socket.socket, "getpeername", refused_getpeername)

    async def main() -> None:
        # reports=False: the listeners are never shared, so every connection is handed.
        launcher = AppLauncher(asyncio.get_running_loop(), reports=False, version=version)
        async with served(ServiceConfig("web", "x"), launcher) as (svc, port):
            clients = []
            for _ in range(2):
                name, answer = await request_from(("127.0.0.1", port))
                assert answer.endswith(b"by fd\n")
                clients.append(name)
            assert svc.cold == 1 and svc.warm == 1
            assert launcher.peers == (clients if told else [None, None])

    run(main())


@pytest.mark.parametrize(
    ("version", "peer", "kind"),
    [
        (1, ("127.0.0.1", 5000), handoff.CONNECTION),  # an image from before "A"
        (2, ("127.0.0.1", 5000), handoff.ADDRESSED),
        (2, ("::1", 5000, 0, 0), handoff.ADDRESSED),
        (2, None, handoff.CONNECTION),  # no address known
        (2, "/run/gw.sock", handoff.CONNECTION),  # not an IP peer: "C", never a refusal
        (3, ("127.0.0.1", 5000), handoff.ADDRESSED),  # a newer runtime takes "A" too
    ],
)
def test_the_message_follows_the_apps_version(version: int, peer: object, kind: bytes) -> None:
    channel, app_end = Channel.pair(version)
    try:
        message = channel.connection_message(80, b"GET", peer)
        got, port, rest = handoff.parse(message)
        assert (got, port) == (kind, 80)
        if kind == handoff.ADDRESSED:
            assert handoff.parse_peer(rest) == (peer, b"GET")
        else:
            assert rest == b"GET"
    finally:
        channel.close()
        app_end.close()


class HandoffTarget(FakeTarget):
    """A fake target that takes a hand-off channel, and keeps the app's end to read from."""

    capabilities: ClassVar[frozenset[str]] = frozenset({HANDOFF})

    def __init__(self) -> None:
        super().__init__()
        self.app_ends: list[socket.socket] = []
        self.specs: list[RunSpec] = []

    def start(self, spec: RunSpec) -> Instance:
        assert spec.handoff is not None
        self.specs.append(spec)
        self.app_ends.append(socket.socket(fileno=os.dup(spec.handoff)))
        return FakeInstance()


def image_with(labels: dict[str, str], rootfs: Path) -> Any:
    """An image as RunSpec.for_image reads it: a WSGI app on socket networking (handed its
    connections by a gateway), with these config labels."""
    app = {"entry": {"kind": "wsgi", "module": "app", "attr": "app"}, "network": "socket"}
    return SimpleNamespace(
        ref="web:1",
        desc=SimpleNamespace(digest="sha256:" + "0" * 64),
        # A derived profile without connect(): such an app may be handed host sockets.
        config={
            "config": {
                "Labels": {"dev.summon.name": "web", SYSCALLS_LABEL: "accept4 recvfrom", **labels}
            }
        },
        app_config=lambda: app,
        rootfs=lambda: rootfs,
    )


@pytest.mark.parametrize(
    ("labels", "version", "kind"),
    [
        ({}, 1, handoff.CONNECTION),  # built before the label: its runtime knows only "C"
        ({HANDOFF_LABEL: "2"}, 2, handoff.ADDRESSED),
        ({HANDOFF_LABEL: "two"}, 1, handoff.CONNECTION),  # unreadable: the safe choice
    ],
)
def test_the_gateway_reads_what_the_image_takes_from_its_label(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    labels: dict[str, str],
    version: int,
    kind: bytes,
) -> None:
    monkeypatch.setattr(scratch, "LEASES", tmp_path / "leases")
    launcher = ImageLauncher(store=SimpleNamespace(root=tmp_path), state_root=tmp_path / "gw")
    target = HandoffTarget()
    image = image_with(labels, tmp_path)
    monkeypatch.setattr(launcher, "target", lambda config: target)
    monkeypatch.setattr(launcher, "_prepared", lambda config, target, step: image)
    launched = launcher(ServiceConfig("web", "web:1"), (), "gw-web-1")
    channel = launched.channel
    listener = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(listener.getsockname())
    conn, peer = listener.accept()
    try:
        assert channel is not None and channel.version == version
        assert target.specs[0].handoff_version == version
        assert channel.try_send(conn, 80, b"", peer)
        message, fds, _flags, _addr = socket.recv_fds(target.app_ends[0], 1024, 1)
        for fd in fds:
            os.close(fd)
        got, port, rest = handoff.parse(message)
        assert (got, port) == (kind, 80)
        assert kind != handoff.ADDRESSED or handoff.parse_peer(rest)[0] == client.getsockname()
    finally:
        if channel is not None:
            channel.close()
        for sock in (*target.app_ends, conn, client, listener):
            sock.close()
        scratch.release_for(launched.instance)


def test_what_a_build_writes_the_gateway_reads(tmp_path: Path) -> None:
    """An image built now says it takes "A": its label carries the runtime's VERSION."""
    (tmp_path / "app.py").write_text("def app(environ, start_response):\n    return []\n")
    (tmp_path / "summon.toml").write_text('name = "t"\nentry = "app:app"\nports = [8000]\n')
    bom = Descriptor("application/json", "sha256:" + "1" * 64, 2)
    config = image_config(manifest.load(tmp_path), ["/usr/bin/python3.11"], "sha256:0", bom)
    labels = config["config"]["Labels"]
    assert labels[HANDOFF_LABEL] == str(handoff.VERSION)
    spec = RunSpec.for_image(image_with(labels, tmp_path), name="t", state_dir=tmp_path)
    assert spec.handoff_version == handoff.VERSION >= handoff.ADDRESSED_SINCE


class SplicedTarget(FakeTarget):
    """A fake target with the hand-off capability that notes what each start was given."""

    capabilities: ClassVar[frozenset[str]] = frozenset({HANDOFF})

    def __init__(self) -> None:
        super().__init__()
        self.specs: list[RunSpec] = []

    def start(self, spec: RunSpec) -> Instance:
        self.specs.append(spec)
        return FakeInstance()


def test_an_app_whose_profile_allows_connect_is_spliced_not_handed_connections(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """RunSpec.takes_host_sockets: a connection handed by fd, disconnected by
    connect(AF_UNSPEC) and connected again, reaches anywhere from the gateway's namespace;
    an image with egress (its profile allows connect) gets no channel, and its ports are
    forwarded to, as a VM's are."""
    monkeypatch.setattr(scratch, "LEASES", tmp_path / "leases")
    launcher = ImageLauncher(store=SimpleNamespace(root=tmp_path), state_root=tmp_path / "gw")
    target = SplicedTarget()
    image = image_with({SYSCALLS_LABEL: "accept4 connect recvfrom"}, tmp_path)
    monkeypatch.setattr(launcher, "target", lambda config: target)
    monkeypatch.setattr(launcher, "_prepared", lambda config, target, step: image)
    forwards = (PortForward(0, 80),)
    launched = launcher(ServiceConfig("web", "web:1"), forwards, "gw-web-2")
    try:
        assert launched.channel is None
        assert target.specs[0].handoff is None
        assert target.specs[0].ports == forwards
    finally:
        scratch.release_for(launched.instance)
