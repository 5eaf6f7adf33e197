"""The socket Stack's two ways of being handed its traffic: host listeners and a gateway's fds."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket

import pytest

from summon.runtime import handoff
from summon.runtime.socket_stack import LISTEN_FDS_START, SocketStack, handed_listeners


def listening() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    return sock


async def echo_upper(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write((await reader.readline()).upper())
    await writer.drain()
    writer.close()


async def ask(address: tuple[str, int], line: bytes) -> bytes:
    reader, writer = await asyncio.open_connection(*address)
    writer.write(line)
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    return answer


@pytest.mark.parametrize(
    ("environ", "found"),
    [
        ({}, {}),
        (
            {"LISTEN_FDS": "2", "LISTEN_PID": "7", "LISTEN_FDNAMES": "80:8443"},
            {80: (3,), 8443: (4,)},
        ),
        # two host ports forwarded to one guest port (-p 8080:80 -p 8081:80)
        ({"LISTEN_FDS": "2", "LISTEN_PID": "7", "LISTEN_FDNAMES": "80:80"}, {80: (3, 4)}),
        # meant for another process (inherited from a parent): ignored
        ({"LISTEN_FDS": "1", "LISTEN_PID": "8", "LISTEN_FDNAMES": "80"}, {}),
        # a socket named other than by a port is left alone; a missing name too
        ({"LISTEN_FDS": "3", "LISTEN_PID": "7", "LISTEN_FDNAMES": "web:81"}, {81: (4,)}),
    ],
)
def test_handed_listeners(environ: dict[str, str], found: dict[int, tuple[int, ...]]) -> None:
    assert handed_listeners(environ, 7) == found


def test_handed_listeners_refuses_a_malformed_count() -> None:
    with pytest.raises(ValueError, match="LISTEN_FDS: 'two' is not a number"):
        handed_listeners({"LISTEN_FDS": "two", "LISTEN_PID": "7"}, 7)
    with pytest.raises(ValueError, match="SUMMON_HANDOFF_FD"):
        SocketStack.from_environ({"SUMMON_HANDOFF_FD": "x"})
    assert LISTEN_FDS_START == 3


def test_start_server_accepts_on_the_host_listener_and_again_after_a_close() -> None:
    host = listening()
    address = host.getsockname()

    async def scenario() -> None:
        stack = SocketStack("127.0.0.1", listeners={80: (host.fileno(),)})
        server = await stack.start_server(echo_upper, 80)
        assert server.port == 80
        assert await ask(address, b"first\n") == b"FIRST\n"
        server.close()
        await server.wait_closed()
        # The host's socket stays open (the server had a copy): started again, it serves.
        server = await stack.start_server(echo_upper, 80)
        assert await ask(address, b"again\n") == b"AGAIN\n"
        server.close()
        await server.wait_closed()

    try:
        asyncio.run(scenario())
        assert host.fileno() >= 0 and host.getsockname() == address
    finally:
        host.close()


def test_a_port_handed_over_twice_is_served_on_both_listeners() -> None:
    """-p 8080:80 -p 8081:80: two host listeners named 80; each must answer."""
    first, second = listening(), listening()

    async def scenario() -> None:
        stack = SocketStack("127.0.0.1", listeners={80: (first.fileno(), second.fileno())})
        server = await stack.start_server(echo_upper, 80)
        serving = asyncio.ensure_future(server.serve_forever())
        assert await ask(first.getsockname(), b"one\n") == b"ONE\n"
        assert await ask(second.getsockname(), b"two\n") == b"TWO\n"
        server.close()
        await server.wait_closed()
        serving.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await serving

    try:
        asyncio.run(scenario())
    finally:
        first.close()
        second.close()


def test_connections_handed_over_before_the_app_serves_wait_and_keep_their_bytes() -> None:
    async def scenario() -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        stack = SocketStack("127.0.0.1", {(80, "tcp"): 0}, handoff=theirs.detach())
        server_side = listening()
        loop = asyncio.get_running_loop()
        client = socket.create_connection(server_side.getsockname())
        accepted, _ = server_side.accept()
        client.sendall(b"held by the gateway ")
        held = accepted.recv(100)
        client.sendall(b"then read by the app\n")
        # Sent before the app serves port 80: it waits in the socketpair.
        socket.send_fds(ours, [handoff.connection_message(80, held)], [accepted.fileno()])
        accepted.close()
        before = handoff.handed
        server = await stack.start_server(echo_upper, 80)
        assert ours.recv(16) == handoff.listening_message(80)
        client.setblocking(False)
        answer = await asyncio.wait_for(loop.sock_recv(client, 100), 5)
        assert answer == b"HELD BY THE GATEWAY THEN READ BY THE APP\n"
        assert handoff.handed == before + 1
        server.close()
        assert stack.receiver is not None
        stack.receiver.close()
        for sock in (client, server_side, ours):
            sock.close()

    asyncio.run(scenario())


def test_a_closed_server_stops_taking_connections_and_bad_messages_are_dropped() -> None:
    async def scenario() -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        stack = SocketStack("127.0.0.1", {(80, "tcp"): 0}, handoff=theirs.detach())
        server = await stack.start_server(echo_upper, 80)
        ours.recv(16)
        server.close()
        receiver = stack.receiver
        assert receiver is not None and 80 not in receiver.servers
        a, b = socket.socketpair()
        socket.send_fds(ours, [b"X??"], [a.fileno()])  # not a hand-off message: closed
        socket.send_fds(ours, [handoff.connection_message(81, b"")], [a.fileno()])  # waits
        await asyncio.sleep(0.1)
        assert list(receiver.waiting) == [81]
        receiver.close()
        for sock in (a, b, ours):
            sock.close()

    asyncio.run(scenario())


def test_messages_round_trip_and_refuse_what_they_are_not() -> None:
    assert handoff.parse(handoff.connection_message(80, b"GET")) == (b"C", 80, b"GET")
    assert handoff.parse(handoff.listening_message(53)) == (b"L", 53, b"")
    for bad in (b"", b"C", b"Z\x00\x50", b"C\x00\x00", b"L\x00\x50x"):
        with pytest.raises(ValueError):
            handoff.parse(bad)
    with pytest.raises(ValueError, match="at most"):
        handoff.connection_message(80, b"x" * (handoff.HELD_LIMIT + 1))


def test_counted_connections() -> None:
    from summon.runtime import socket_stack

    host = listening()

    async def scenario() -> None:
        stack = SocketStack("127.0.0.1", listeners={80: (os.dup(host.fileno()),)})
        server = await stack.start_server(echo_upper, 80)
        before = socket_stack.accepted
        assert await ask(host.getsockname(), b"x\n") == b"X\n"
        assert socket_stack.accepted == before + 1
        server.close()

    try:
        asyncio.run(scenario())
    finally:
        host.close()


def test_a_shared_listener_is_accepted_on_until_paused() -> None:
    async def scenario() -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        ours.setblocking(False)
        loop = asyncio.get_running_loop()
        stack = SocketStack("127.0.0.1", {(80, "tcp"): 0}, handoff=theirs.detach())
        server = await stack.start_server(echo_upper, 80)
        assert await loop.sock_recv(ours, 16) == handoff.listening_message(80)
        gateway_listener = listening()
        gateway_listener.setblocking(False)
        address = gateway_listener.getsockname()
        socket.send_fds(ours, [handoff.message(handoff.SHARE, 80)], [gateway_listener.fileno()])
        await asyncio.sleep(0.05)
        assert await ask(address, b"direct\n") == b"DIRECT\n"  # the app accepted it
        ours.send(handoff.message(handoff.PAUSE, 80))
        assert await loop.sock_recv(ours, 16) == handoff.message(handoff.PAUSED, 80)
        # Let go: a connection now waits for the gateway, which still holds the listener.
        client = socket.create_connection(address)
        conn, _ = await asyncio.wait_for(loop.sock_accept(gateway_listener), 5)
        conn.close()
        client.close()
        server.close()
        assert stack.receiver is not None
        stack.receiver.close()
        gateway_listener.close()
        ours.close()

    asyncio.run(scenario())


def test_a_server_closed_and_started_again_accepts_on_the_shared_listener_again() -> None:
    """An app that closed its server and started it again on the port (which docs/sandbox.md
    lets it do with a host listener) had let go of the gateway's shared listener for good:
    the gateway, still sharing it, did not accept either, and clients hung in the backlog
    until the next idle step. And a listener taken back ("P") before the app served its
    port was accepted on once it did, behind the gateway's back."""

    async def scenario() -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        ours.setblocking(False)
        loop = asyncio.get_running_loop()
        stack = SocketStack("127.0.0.1", {(80, "tcp"): 0}, handoff=theirs.detach())
        server = await stack.start_server(echo_upper, 80)
        assert await loop.sock_recv(ours, 16) == handoff.listening_message(80)
        gateway_listener = listening()
        gateway_listener.setblocking(False)
        address = gateway_listener.getsockname()
        socket.send_fds(ours, [handoff.message(handoff.SHARE, 80)], [gateway_listener.fileno()])
        await asyncio.sleep(0.05)
        assert await ask(address, b"one\n") == b"ONE\n"
        server.close()
        await server.wait_closed()
        server = await stack.start_server(echo_upper, 80)
        assert await loop.sock_recv(ours, 16) == handoff.listening_message(80)
        assert await ask(address, b"again\n") == b"AGAIN\n"  # the app accepted it again
        # Taken back while no server runs: the next server leaves the listener alone.
        server.close()
        await server.wait_closed()
        ours.send(handoff.message(handoff.PAUSE, 80))
        assert await loop.sock_recv(ours, 16) == handoff.message(handoff.PAUSED, 80)
        server = await stack.start_server(echo_upper, 80)
        assert await loop.sock_recv(ours, 16) == handoff.listening_message(80)
        client = socket.create_connection(address)
        conn, _ = await asyncio.wait_for(loop.sock_accept(gateway_listener), 5)
        conn.close()
        client.close()
        server.close()
        assert stack.receiver is not None
        stack.receiver.close()
        gateway_listener.close()
        ours.close()

    asyncio.run(asyncio.wait_for(scenario(), 20))


# --- "A": a connection with its client's address -------------------------------------------

PEERS = [
    ("127.0.0.1", 54321),
    ("::1", 8080, 0, 0),
    ("2001:db8::7", 443, 0x12345, 0),
    # A link-local peer: the scope goes as its number, and comes back in the host as one
    # (CPython's accept() names it, "fe80::1%eth0": a name the app's namespace lacks).
    ("fe80::1%eth0", 5353, 0, 2),
]


@pytest.mark.parametrize("peer", PEERS)
def test_addressed_messages_round_trip(peer: tuple[object, ...]) -> None:
    kind, port, rest = handoff.parse(handoff.addressed_message(80, b"GET /", peer))
    assert (kind, port) == (handoff.ADDRESSED, 80)
    got, held = handoff.parse_peer(rest)
    assert held == b"GET /"
    assert got == (peer if peer[0] != "fe80::1%eth0" else ("fe80::1%2", 5353, 0, 2))
    assert len(handoff.addressed_message(80, b"x" * handoff.HELD_LIMIT, peer)) <= (
        handoff.MESSAGE_LIMIT
    )


V4 = bytes((handoff.IPV4,)) + bytes((127, 0, 0, 1)) + (54321).to_bytes(2, "big")
V6 = bytes((handoff.IPV6,)) + bytes(15) + b"\x01" + (80).to_bytes(2, "big") + bytes(8)


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b"", "family -1"),
        (b"\x05" + V4[1:], "family 5"),  # neither 4 nor 6
        (b"\x02" + V4[1:], "family 2"),  # AF_INET's own number is not PEER's
        (V4[:6], "cut at 6 of 7 bytes"),
        (V6[:20], "cut at 20 of 27 bytes"),
        (V4[:5] + b"\x00\x00", "port 0"),
        (V4 + b"x" * (handoff.HELD_LIMIT + 1), "at most"),
    ],
)
def test_a_malformed_peer_is_refused(body: bytes, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        handoff.parse_peer(body)


@pytest.mark.parametrize(
    "peer",
    [
        "/run/app.sock",  # AF_UNIX: the gateway listens on IP only
        b"",
        None,
        ("127.0.0.1",),
        ("::1", 80),  # an IPv6 host as an IPv4 peer
        ("127.0.0.1", 80, 0, 0),  # and the other way round
        ("127.0.0.1", 65536),
        ("127.0.0.1", -1),
        ("localhost", 80),  # a name: no lookup here
        ("::1", 80, 0, 1 << 32),
    ],
)
def test_only_ip_peers_are_written(peer: object) -> None:
    with pytest.raises(ValueError, match="not an IP peer address"):
        handoff.peer_bytes(peer)


def test_an_addressed_message_keeps_the_held_limit() -> None:
    with pytest.raises(ValueError, match="at most"):
        handoff.addressed_message(80, b"x" * (handoff.HELD_LIMIT + 1), ("127.0.0.1", 1))


def refused_getpeername(self: socket.socket) -> object:
    """getpeername as the sandbox's seccomp profile answers it (no rule for it)."""
    raise PermissionError(1, "Operation not permitted")


class Handed:
    """A runtime Stack with a hand-off channel serving port 80, and a real TCP connection
    (client, and the server end the gateway would hand over) per connect()."""

    def __init__(self) -> None:
        self.ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.stack = SocketStack("127.0.0.1", {(80, "tcp"): 0}, handoff=theirs.detach())
        self.server_side = listening()
        self.peers: list[object] = []
        self.sockets: list[socket.socket] = [self.ours, self.server_side]

    async def start(self) -> None:
        async def record(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.peers.append(writer.get_extra_info("peername"))
            writer.write(b"seen " + (await reader.readline()))
            await writer.drain()
            writer.close()

        await self.stack.start_server(record, 80)
        assert self.ours.recv(16) == handoff.listening_message(80)

    def connect(self) -> tuple[socket.socket, socket.socket]:
        client = socket.create_connection(self.server_side.getsockname())
        accepted, _ = self.server_side.accept()
        self.sockets += [client, accepted]
        return client, accepted

    def hand(self, message: bytes, accepted: socket.socket) -> None:
        socket.send_fds(self.ours, [message], [accepted.fileno()])
        accepted.close()

    def close(self) -> None:
        assert self.stack.receiver is not None
        self.stack.receiver.close()
        for sock in self.sockets:
            sock.close()


async def answer(client: socket.socket) -> bytes:
    client.setblocking(False)
    loop = asyncio.get_running_loop()
    data = b""
    while chunk := await asyncio.wait_for(loop.sock_recv(client, 100), 5):
        data += chunk
    return data


@pytest.mark.parametrize("peer", [("192.0.2.7", 4242), ("2001:db8::7", 4242, 0, 0)])
def test_an_addressed_connection_tells_the_app_its_peer_without_asking_the_kernel(
    monkeypatch: pytest.MonkeyPatch, peer: tuple[object, ...]
) -> None:
    """The peer the app sees is the one the message says (not the socket's own far end),
    with getpeername refused as the sandbox refuses it: no line, and a client address for
    the app's logs, REMOTE_ADDR and scope["client"] (all read from the transport)."""
    monkeypatch.setattr(socket.socket, "getpeername", refused_getpeername)

    async def scenario() -> None:
        app = Handed()
        try:
            await app.start()
            client, accepted = app.connect()
            client.sendall(b"hello\n")
            app.hand(handoff.addressed_message(80, b"", peer), accepted)
            assert await answer(client) == b"seen hello\n"
            assert app.peers == [peer]
        finally:
            app.close()

    asyncio.run(scenario())


def test_a_plain_connection_is_served_as_before_with_the_kernels_peer() -> None:
    """An older gateway sends "C": the app asks the kernel, as it did before "A"."""

    async def scenario() -> None:
        app = Handed()
        try:
            await app.start()
            client, accepted = app.connect()
            client.sendall(b"old\n")
            app.hand(handoff.connection_message(80, b""), accepted)
            assert await answer(client) == b"seen old\n"
            assert app.peers == [client.getsockname()]
        finally:
            app.close()

    asyncio.run(scenario())


@pytest.mark.parametrize(
    "bad",
    [
        handoff.ADDRESSED + (80).to_bytes(2, "big") + b"\x05" + V4[1:],
        handoff.ADDRESSED + (80).to_bytes(2, "big") + V6[:10],
        handoff.ADDRESSED + (80).to_bytes(2, "big"),
        handoff.ADDRESSED + (80).to_bytes(2, "big") + V4 + b"x" * handoff.MESSAGE_LIMIT,
        # Past MESSAGE_LIMIT the socketpair cuts a message, and the held bytes with it: a
        # request whose end is lost is not served (what is left of it looks whole here).
        handoff.connection_message(80, b"early\n") + b"x" * handoff.MESSAGE_LIMIT,
    ],
    ids=["unknown-family", "peer-cut-short", "no-peer", "A-past-the-limit", "C-past-the-limit"],
)
def test_a_malformed_or_cut_message_closes_its_connection_only(bad: bytes) -> None:
    async def scenario() -> None:
        app = Handed()
        try:
            await app.start()
            client, accepted = app.connect()
            app.ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 * len(bad))
            app.hand(bad, accepted)
            assert await answer(client) == b""  # closed, unserved
            # The channel and the app go on: the next connection is served.
            client, accepted = app.connect()
            client.sendall(b"next\n")
            app.hand(handoff.addressed_message(80, b"", ("127.0.0.1", 1234)), accepted)
            assert await answer(client) == b"seen next\n"
            assert app.peers == [("127.0.0.1", 1234)]
        finally:
            app.close()

    asyncio.run(scenario())
