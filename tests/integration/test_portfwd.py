"""The port forwarder against a network namespace the test makes (and removes) itself.

Servers listen on the namespace's loopback; the forwarder listens on the host's 127.0.0.1.
No interface or address is created anywhere, and no traffic leaves loopback.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from pyroute2 import IPRoute

from summon.targets.base import PortForward, PortTaken
from summon.targets.sandbox.netns import NetNamespace, list_namespaces, run_inside
from summon.targets.sandbox.portfwd import PortForwarder

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to make a netns")

GUEST = 80


@pytest.fixture
def ns() -> Iterator[NetNamespace]:
    with NetNamespace(f"summon-test-{uuid.uuid4().hex[:8]}") as made:
        yield made
    assert made.name not in list_namespaces()


def inside_listener(ns: NetNamespace, port: int, kind: int = socket.SOCK_STREAM) -> socket.socket:
    """A socket bound to 127.0.0.1:port inside ns (it stays there when the thread ends)."""

    def make() -> socket.socket:
        sock = socket.socket(socket.AF_INET, kind)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        if kind == socket.SOCK_STREAM:
            sock.listen(64)
        return sock

    return run_inside(ns.path, make)


def serve_tcp(listener: socket.socket, handle: Callable[[socket.socket], None]) -> None:
    """Accept connections on a daemon thread until the listener closes."""

    def loop() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=handle, args=(conn,), daemon=True).start()

    threading.Thread(target=loop, daemon=True).start()


def echo(conn: socket.socket) -> None:
    """Echo until EOF, then half-close: the client must see all bytes and then EOF."""
    with conn:
        while data := conn.recv(65536):
            conn.sendall(data)
        conn.shutdown(socket.SHUT_WR)


def recv_all(sock: socket.socket) -> bytes:
    chunks = []
    while data := sock.recv(65536):
        chunks.append(data)
    return b"".join(chunks)


@contextlib.contextmanager
def forwarding(
    ns: NetNamespace, protocol: str = "tcp", patience: float = 5.0
) -> Iterator[tuple[PortForwarder, int]]:
    fwd = PortForward(host_port=0, guest_port=GUEST, protocol=protocol)
    with PortForwarder(ns.path, [fwd], connect_patience=patience) as forwarder:
        yield forwarder, forwarder.bound[fwd][1]


def host_addresses() -> set[str]:
    with IPRoute() as ipr:
        return {str(a.get_attr("IFA_ADDRESS")) for a in ipr.get_addr()}


def test_tcp_echo_with_half_close(ns: NetNamespace) -> None:
    before = host_addresses()
    listener = inside_listener(ns, GUEST)
    serve_tcp(listener, echo)
    payload = os.urandom(3 * 1024 * 1024)

    def send(c: socket.socket) -> None:
        c.sendall(payload)
        c.shutdown(socket.SHUT_WR)

    with forwarding(ns) as (_fwd, port), socket.create_connection(("127.0.0.1", port), 5) as c:
        sender = threading.Thread(target=send, args=(c,))
        sender.start()
        assert recv_all(c) == payload
        sender.join()
    listener.close()
    assert host_addresses() == before, "the forwarder must not add addresses to the host"


def test_connects_from_inside_the_namespace(ns: NetNamespace) -> None:
    """Same port on host loopback and in the netns: the forwarder must reach the netns one."""

    def answer(word: bytes) -> Callable[[socket.socket], None]:
        def handle(conn: socket.socket) -> None:
            with conn:
                conn.sendall(word)

        return handle

    host = socket.socket()
    host.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    host.bind(("127.0.0.1", 0))
    host.listen()
    serve_tcp(host, answer(b"host"))
    port_both = host.getsockname()[1]
    inside = inside_listener(ns, port_both)
    serve_tcp(inside, answer(b"inside"))
    fwd = PortForward(host_port=0, guest_port=port_both)
    with PortForwarder(ns.path, [fwd]) as forwarder:
        port = forwarder.bound[fwd][1]
        with socket.create_connection(("127.0.0.1", port), 5) as c:
            assert recv_all(c) == b"inside"
    with socket.create_connection(("127.0.0.1", port_both), 5) as c:
        assert recv_all(c) == b"host", "control: the host listener answers on its own"
    inside.close()
    host.close()


def test_first_connection_is_held_until_the_app_listens(ns: NetNamespace) -> None:
    with forwarding(ns) as (_fwd, port):
        c = socket.create_connection(("127.0.0.1", port), 5)
        c.sendall(b"early bytes")
        c.shutdown(socket.SHUT_WR)
        time.sleep(0.4)  # the app is "still starting": nothing listens inside yet
        listener = inside_listener(ns, GUEST)
        serve_tcp(listener, echo)
        with c:
            assert recv_all(c) == b"early bytes"
        listener.close()


def test_gives_up_after_its_patience(ns: NetNamespace) -> None:
    with forwarding(ns, patience=0.3) as (_fwd, port):
        started = time.monotonic()
        with socket.create_connection(("127.0.0.1", port), 5) as c:
            assert recv_all(c) == b""  # closed, not hung
        assert time.monotonic() - started < 3


def test_a_client_closed_for_want_of_a_listener_is_said_once_naming_the_apps_port(
    ns: NetNamespace,
) -> None:
    # An app listening on 8081 while the run forwarded to 80: its clients were closed after
    # the patience, and nothing anywhere said why.
    listener = inside_listener(ns, 8081)
    said: list[str] = []
    fwd = PortForward(host_port=0, guest_port=GUEST)
    with PortForwarder(ns.path, [fwd], connect_patience=0.2, say=said.append) as forwarder:
        port = forwarder.bound[fwd][1]
        for _ in range(2):
            with socket.create_connection(("127.0.0.1", port), 5) as c:
                assert recv_all(c) == b""
    listener.close()
    assert said == [
        f"summon: nothing listened on port 80 in the instance for 0.2 s, so a client of "
        f"127.0.0.1:{port} was closed; the app listens on TCP port 8081: forward to that "
        "or make the app listen on 80"
    ]


def test_many_clients_at_once(ns: NetNamespace) -> None:
    listener = inside_listener(ns, GUEST)
    serve_tcp(listener, echo)

    def one(i: int) -> bool:
        data = os.urandom(1000 + i * 997)
        with socket.create_connection(("127.0.0.1", port), 5) as c:
            c.sendall(data)
            c.shutdown(socket.SHUT_WR)
            return recv_all(c) == data

    with forwarding(ns) as (_fwd, port), ThreadPoolExecutor(16) as pool:
        assert all(pool.map(one, range(64)))
    listener.close()


def test_client_reset_does_not_leak(ns: NetNamespace) -> None:
    listener = inside_listener(ns, GUEST)
    serve_tcp(listener, echo)
    with forwarding(ns) as (forwarder, port):
        for _ in range(20):
            c = socket.create_connection(("127.0.0.1", port), 5)
            c.sendall(b"x")
            assert c.recv(1) == b"x"
            c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            c.close()  # RST
        deadline = time.monotonic() + 3
        while forwarder._open and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not forwarder._open, "sessions whose client reset must close both sockets"
    listener.close()


def test_udp_each_client_gets_its_own_replies(ns: NetNamespace) -> None:
    server = inside_listener(ns, GUEST, socket.SOCK_DGRAM)

    def dns_like() -> None:
        while True:
            try:
                data, addr = server.recvfrom(2048)
            except OSError:
                return
            server.sendto(b"re:" + data, addr)

    threading.Thread(target=dns_like, daemon=True).start()
    with forwarding(ns, "udp") as (_fwd, port):
        clients = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(3)]
        for i, c in enumerate(clients):
            c.settimeout(5)
            c.sendto(b"q%d" % i, ("127.0.0.1", port))
        for i, c in enumerate(clients):
            assert c.recvfrom(2048) == (b"re:q%d" % i, ("127.0.0.1", port))
            c.close()
    server.close()


def test_stop_releases_everything_and_is_idempotent(ns: NetNamespace) -> None:
    fwd = PortForward(host_port=0, guest_port=GUEST)
    forwarder = PortForwarder(ns.path, [fwd])
    forwarder.start()
    port = forwarder.bound[fwd][1]
    forwarder.stop()
    forwarder.stop()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), 2)
    assert not [t for t in threading.enumerate() if t.name == "summon-portfwd"]


def test_port_in_use_fails_at_start(ns: NetNamespace) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        fwd = PortForward(host_port=taken.getsockname()[1], guest_port=GUEST)
        with pytest.raises(PortTaken, match="cannot listen there"), PortForwarder(ns.path, [fwd]):
            pass
    assert not [t for t in threading.enumerate() if t.name == "summon-portfwd"]


def test_bad_protocol() -> None:
    with pytest.raises(ValueError, match="tcp or udp"):
        PortForwarder(NetNamespace("x").path, [PortForward(1, 2, "sctp")])


def test_a_namespace_has_lo_up_and_low_ports_open_and_goes_away() -> None:
    """What NetNamespace makes with the syscalls `ip netns add` uses (no pyroute2)."""
    name = f"summon-test-{uuid.uuid4().hex[:8]}"
    with NetNamespace(name) as made:
        assert name in list_namespaces()

        def look() -> tuple[list[tuple[int, str]], str]:
            with open("/proc/sys/net/ipv4/ip_unprivileged_port_start") as f:
                start = f.read().strip()
            with socket.create_server(("127.0.0.1", 0)) as server:  # lo is up: it answers
                socket.create_connection(server.getsockname(), timeout=2).close()
            return socket.if_nameindex(), start

        interfaces, start = run_inside(made.path, look)
        assert interfaces == [(1, "lo")]  # its own: none of the host's interfaces
        assert start == "0"  # an app without capabilities may listen on port 80
    assert name not in list_namespaces()
    assert not os.path.exists(f"/run/netns/{name}")
