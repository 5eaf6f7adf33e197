"""DirectStack: two summon.net stacks wired back to back in memory, under a real asyncio loop.

The wire is an AF_UNIX datagram socketpair (one frame per datagram, nothing leaves the
process), so the stacks run exactly as on a TAP: add_reader on an fd, frames in batches. The
apps are the examples themselves (examples/http, examples/dns), unchanged.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import json
import os
import socket
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import h11
import pytest

from summon.devices import Console
from summon.net.ipv4 import parse_address
from summon.net.links import Link
from summon.net.netspec import NetSpec, open_link
from summon.net.stack import DirectStack
from summon.net.streams import UDP_QUEUE_BYTES
from summon.net.tcp.config import TCPConfig
from summon.runtime.posix_devices import FolderKV

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
SERVER_IP, CLIENT_IP = "192.0.2.1", "192.0.2.2"  # TEST-NET-1: in memory only


class SocketPairLink(Link):
    """One end of an AF_UNIX datagram socketpair, as a frame link."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        sock.setblocking(False)
        self.sent = 0

    def fileno(self) -> int:
        return self.sock.fileno()

    def send(self, frame: bytes) -> None:
        self.sent += 1
        try:
            self.sock.send(frame)
        except OSError:
            pass  # a full ring (or a closed peer) drops, as a NIC's would; TCP recovers

    def receive(self) -> list[bytes]:
        frames = []
        while len(frames) < 256:
            try:
                frames.append(self.sock.recv(70000))
            except BlockingIOError:
                break
        return frames

    def close(self) -> None:
        self.sock.close()


_open: list[DirectStack] = []  # closed by run() at the end of each test, on its loop


def stack_pair(mtu: int = 1500, **kwargs: Any) -> tuple[DirectStack, DirectStack]:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    for s in (a, b):
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    server = DirectStack(
        SocketPairLink(a), b"\x02\0\0\0\0\x01", ip=parse_address(SERVER_IP), mtu=mtu, **kwargs
    )
    client = DirectStack(
        SocketPairLink(b), b"\x02\0\0\0\0\x02", ip=parse_address(CLIENT_IP), mtu=mtu, **kwargs
    )
    _open.extend((server, client))
    return server, client


def run(coro: Callable[[], Awaitable[None]], timeout: float = 30) -> None:
    async def bounded() -> None:
        try:
            await asyncio.wait_for(coro(), timeout)
        finally:
            while _open:  # links, connections and writers, before the loop goes
                _open.pop().close()
            await asyncio.sleep(0)  # connection_lost callbacks

    asyncio.run(bounded())


def load_example(name: str, module: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        f"example_{name}_{module}", EXAMPLES / name / f"{module}.py"
    )
    assert spec is not None and spec.loader is not None
    loaded = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = loaded
    spec.loader.exec_module(loaded)
    return loaded


class QuietConsole(Console):
    def __init__(self) -> None:
        self.lines: list[str] = []

    def write(self, line: str) -> None:
        self.lines.append(line)

    def log(self, level: str, message: str) -> None:
        self.lines.append(f"{level}: {message}")


async def started(task: asyncio.Task[None], stack: DirectStack, port: int) -> None:
    """Wait until the app's listener on port exists (the app's start is its own business)."""
    for _ in range(500):
        if task.done():
            task.result()
        assert stack.tcp is not None or stack.iface is None
        if stack.tcp is not None and port in stack.tcp._listeners:
            return
        await asyncio.sleep(0.002)
    raise AssertionError(f"nothing listens on {port}")


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass


# --- HTTP: examples/http served by one stack, fetched through the other -------------------------


def test_http_example_serves_pages_to_an_h11_client_over_the_direct_stack() -> None:
    http = load_example("http", "app")

    async def main() -> None:
        server, client = stack_pair()
        console = QuietConsole()
        app = asyncio.create_task(
            http.main(server, FolderKV(str(EXAMPLES / "http" / "static")), console)
        )
        await started(app, server, 80)
        reader, writer = await client.open_connection(SERVER_IP, 80)
        assert writer.get_extra_info("peername") == (SERVER_IP, 80)
        conn = h11.Connection(h11.CLIENT)
        bodies = []
        for target in ("/", "/style.css", "/missing"):
            request = h11.Request(method="GET", target=target, headers=[("Host", "t")])
            writer.write(conn.send(request) + conn.send(h11.EndOfMessage()))
            await writer.drain()
            status, body = 0, b""
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    conn.receive_data(await reader.read(65536))
                elif isinstance(event, h11.Response):
                    status = event.status_code
                elif isinstance(event, h11.Data):
                    body += event.data
                elif isinstance(event, h11.EndOfMessage):
                    break
            bodies.append((status, body))
            conn.start_next_cycle()
        writer.close()
        await writer.wait_closed()
        await stop(app)
        index = (EXAMPLES / "http" / "static" / "index.html").read_bytes()
        assert bodies[0] == (200, index)
        assert bodies[1][0] == 200 and bodies[2][0] == 404
        assert "info: GET /style.css 200 105" in console.lines
        # Per-path counters of both ends, shared by every layer.
        assert server.counters["stack__tcp__accept"] == 1
        assert server.counters["tcp__listen__syn_received"] == 1
        assert client.counters["arp__request__send"] == 1
        assert server.counters["arp__request__reply"] == 1
        assert server.counters["tcp__retransmit"] == 0

    run(main)


# --- streams: back-pressure, half-close, errors ------------------------------------------------


def test_bulk_transfer_is_byte_exact_in_both_directions() -> None:
    data = os.urandom(3_000_000)

    async def main() -> None:
        server, client = stack_pair(mtu=9000)
        got = asyncio.get_running_loop().create_future()

        async def echo_digest(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            body = await reader.read()  # to EOF: the client's write_eof
            got.set_result(body)
            writer.write(hashlib.sha256(body).digest() + body[::-1])
            await writer.drain()
            writer.close()

        await server.start_server(echo_digest, 9)
        reader, writer = await client.open_connection(SERVER_IP, 9)
        writer.write(data)
        await writer.drain()
        assert writer.can_write_eof()
        writer.write_eof()
        answer = await reader.read()
        assert await got == data
        assert answer == hashlib.sha256(data).digest() + data[::-1]
        writer.close()
        await writer.wait_closed()

    run(main)


def test_a_reader_that_stops_reading_makes_the_writer_drain_wait() -> None:
    async def main() -> None:
        server, client = stack_pair(tcp_config=TCPConfig(send_buffer=65536, receive_buffer=65536))
        accepted: asyncio.Future[tuple[asyncio.StreamReader, asyncio.StreamWriter]]
        accepted = asyncio.get_running_loop().create_future()

        def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            accepted.set_result((reader, writer))  # and never read

        await server.start_server(on_client, 5000)
        _reader, writer = await client.open_connection(SERVER_IP, 5000)
        server_reader, _ = await accepted
        chunk = bytes(64 * 1024)
        written = 0
        drained = True
        while drained:  # until drain() blocks: the window closed all the way back to us
            writer.write(chunk)
            written += len(chunk)
            try:
                await asyncio.wait_for(writer.drain(), 0.5)
            except TimeoutError:
                drained = False
            assert written < 4_000_000, "drain never pushed back"
        # Bounded by what the buffers hold: the app's stream, TCP's two, ours above high water.
        assert written <= 2 * 65536 + 65536 + 65536 + 128 * 1024 + 2 * len(chunk)
        low, high = writer.transport.get_write_buffer_limits()
        assert (low, high) == (16 * 1024, 64 * 1024)
        assert writer.transport.get_write_buffer_size() > low  # paused above high, until low
        assert client.counters["tcp__window_probe"] >= 0
        # Reading again opens the window: everything arrives and drain() returns.
        total = 0
        drain = asyncio.ensure_future(writer.drain())
        while total < written:
            total += len(await server_reader.read(1 << 20))
        await drain
        assert total == written
        writer.close()

    run(main)


def test_refused_and_reset_connections_raise_what_sockets_raise() -> None:
    async def main() -> None:
        server, client = stack_pair()
        await server.start()
        with pytest.raises(ConnectionRefusedError):
            await client.open_connection(SERVER_IP, 81)
        assert server.counters["tcp__no_socket_match__respond_rst"] == 1

        writers: list[asyncio.StreamWriter] = []

        def keep(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writers.append(writer)

        await server.start_server(keep, 82)
        reader, writer = await client.open_connection(SERVER_IP, 82)
        await asyncio.sleep(0.05)
        writers[0].transport.abort()  # RST
        with pytest.raises(ConnectionResetError):
            while await reader.read(100):
                pass
        assert server.counters["tcp__abort__send_rst"] == 1
        assert client.counters["tcp__rst__reset"] == 1
        writer.close()

    run(main)


@pytest.mark.parametrize("half_closed_first", [False, True], ids=["close", "write_eof-then-close"])
def test_a_peer_that_never_sends_its_fin_does_not_keep_a_closed_connection(
    half_closed_first: bool,
) -> None:
    """A peer (scapy, in a namespace) that ACKs the server's FIN and never sends its own:
    100 such connections sat in FIN_WAIT_2 for good, each in the app's memory. A
    connection the app has closed now goes after fin_timeout, as a Linux orphan does."""

    async def main() -> None:
        server, client = stack_pair(tcp_config=TCPConfig(fin_timeout=0.3))
        await server.start()

        async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(b"bye")
            if half_closed_first:
                writer.write_eof()
                await asyncio.sleep(0.05)
            writer.close()  # an HTTP/1.0 server's way: the answer, then close

        await server.start_server(answer, 80)
        reader, writer = await client.open_connection(SERVER_IP, 80)
        assert await reader.read() == b"bye"  # and EOF; the client never closes its side
        assert server.tcp is not None
        for _ in range(300):
            if not server.tcp.connections:
                break
            await asyncio.sleep(0.01)
        assert [c.state for c in server.tcp.connections] == []
        assert server.counters["tcp__fin_timeout__close"] == 1
        writer.close()

    run(main)


def test_server_close_stops_accepting_and_serve_forever_ends_on_cancel() -> None:
    async def main() -> None:
        server, client = stack_pair()
        srv = await server.start_server(lambda r, w: w.close(), 0)
        assert 49152 <= srv.port <= 65535
        forever = asyncio.create_task(srv.serve_forever())
        reader, writer = await client.open_connection(SERVER_IP, srv.port)
        assert await reader.read() == b""  # the server closed it
        writer.close()
        forever.cancel()
        with pytest.raises(asyncio.CancelledError):
            await forever
        with pytest.raises(ConnectionRefusedError):
            await client.open_connection(SERVER_IP, srv.port)
        with pytest.raises(OSError):
            await server.start_server(lambda r, w: None, 99999)

    run(main)


def test_a_thousand_connections_are_held_at_once() -> None:
    async def main() -> None:
        server, client = stack_pair()
        held: list[asyncio.StreamWriter] = []

        def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            held.append(writer)

        await server.start_server(hold, 7, backlog=1024)
        pairs = [await client.open_connection(SERVER_IP, 7) for _ in range(1000)]
        for _ in range(100):
            if len(held) == 1000:
                break
            await asyncio.sleep(0.01)
        assert len(held) == 1000
        # Every one of them still works.
        for i, (_r, w) in enumerate(pairs):
            w.write(b"%d\n" % i)
        for i in (0, 499, 999):
            line = await held[i].transport._protocol._stream_reader.readline()  # type: ignore[attr-defined]
            assert line == b"%d\n" % i
        for _r, w in pairs:
            w.close()

    run(main, timeout=120)


# --- UDP and names -----------------------------------------------------------------------------


def test_udp_datagrams_both_ways_and_errors() -> None:
    async def main() -> None:
        server, client = stack_pair()
        echo = await server.open_udp(7)
        assert echo.port == 7
        mine = await client.open_udp()
        assert mine.port >= 49152
        mine.sendto(b"ping", (SERVER_IP, 7))
        data, addr = await echo.recvfrom()
        assert (data, addr) == (b"ping", (CLIENT_IP, mine.port))
        echo.sendto(data.upper(), addr)
        assert await mine.recvfrom() == (b"PING", (SERVER_IP, 7))
        with pytest.raises(OSError):
            await server.open_udp(7)
        with pytest.raises(ValueError):
            mine.sendto(b"x", ("not-an-address", 7))
        echo.close()
        with pytest.raises(EOFError):
            await echo.recvfrom()
        with pytest.raises(OSError):
            echo.sendto(b"x", addr)

    run(main)


def test_an_unread_udp_port_queues_a_bounded_number_of_bytes() -> None:
    """A peer on the link sending 60 KB datagrams to a port the app reads slowly: the
    endpoint's 1,024-datagram bound alone let 64 MB queue up; the byte bound keeps 1 MiB,
    drops the rest (counted), and what it kept is delivered whole, in order."""

    async def main() -> None:
        server, client = stack_pair(mtu=65000)
        slow = await server.open_udp(9)
        sender = await client.open_udp()
        sent = [bytes([i]) * 60000 for i in range(40)]
        for datagram in sent:
            sender.sendto(datagram, (SERVER_IP, 9))
            await asyncio.sleep(0)
        counters = server.counters
        while counters["udp__datagram__deliver"] < len(sent):  # all there, queued or dropped
            await asyncio.sleep(0.01)
        kept = len(sent) - counters["stack__udp_queue_full__drop"]
        assert 0 < kept * 60000 <= UDP_QUEUE_BYTES
        assert [await slow.recvfrom() for _ in range(kept)] == [
            (d, (CLIENT_IP, sender.port)) for d in sent[:kept]
        ]
        # Read, the queue takes datagrams again.
        sender.sendto(b"again", (SERVER_IP, 9))
        assert await slow.recvfrom() == (b"again", (CLIENT_IP, sender.port))

    run(main)


def test_names_resolve_through_examples_dns_served_by_the_other_stack(tmp_path: Path) -> None:
    dnsd = load_example("dns", "dnsd")
    zone = tmp_path / "zone"
    zone.mkdir()
    (zone / "test.zone").write_text(
        "$TTL 300\n@ IN SOA ns.test. admin.test. 1 3600 600 86400 300\n@ IN NS ns.test.\n"
        f"ns IN A {SERVER_IP}\nweb IN CNAME www\nwww IN A {SERVER_IP}\n"
    )

    async def main() -> None:
        server, client = stack_pair()
        client.nameservers = (parse_address(SERVER_IP),)
        app = asyncio.create_task(dnsd.main(server, FolderKV(str(zone)), QuietConsole()))
        await started(app, server, 53)

        async def hello(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(b"hello by name")
            writer.close()

        await server.start_server(hello, 8000)
        reader, writer = await client.open_connection("web.test", 8000)
        assert await reader.read() == b"hello by name"
        writer.close()
        assert client.counters["dns__query__resolved"] == 1
        _, writer = await client.open_connection("WEB.test.", 8000)  # cached, however spelt
        writer.close()
        assert client.counters["dns__query__resolved"] == 1
        with pytest.raises(OSError, match="NXDOMAIN"):
            await client.open_connection("nobody.test", 8000)
        await stop(app)

    run(main)


# --- configuration and counters ----------------------------------------------------------------


def test_net_spec_parses_static_and_dhcp_and_names_bad_items() -> None:
    spec = NetSpec.parse("10.7.0.2/30,gateway=10.7.0.1,dns=10.7.0.1,dns=9.9.9.9,mtu=65000")
    assert (spec.dhcp, spec.ip, spec.prefix_len, spec.mtu) == (False, b"\x0a\x07\0\x02", 30, 65000)
    assert spec.gateway == b"\x0a\x07\0\x01"
    assert spec.nameservers == (b"\x0a\x07\0\x01", b"\x09\x09\x09\x09")
    dhcp = NetSpec.parse("dhcp,mac=02:00:00:00:00:09")
    assert dhcp.dhcp and dhcp.mac == b"\x02\0\0\0\0\x09"
    for bad, item in [
        ("10.7.0.2", "10.7.0.2"),
        ("10.7.0.300/24", "10.7.0.300/24"),
        ("10.7.0.2/33", "10.7.0.2/33"),
        ("10.7.0.2/30,mtu=100", "mtu=100"),
        ("10.7.0.2/30,colour=blue", "colour=blue"),
        ("dhcp,gateway", "gateway"),
    ]:
        with pytest.raises(ValueError, match=f"SUMMON_NET: '{item}' is not"):
            NetSpec.parse(bad)


def test_open_link_needs_a_device_from_the_target() -> None:
    with pytest.raises(ValueError, match="needs a network device from the target"):
        open_link({})
    with pytest.raises(ValueError, match="fd 987 is not open"):
        open_link({"SUMMON_TAP_FD": "987"})
    with pytest.raises(ValueError, match="not a file descriptor"):
        open_link({"SUMMON_TAP_FD": "three"})
    read, write = os.pipe()
    try:
        with pytest.raises(ValueError, match=f"fd {read} is not a TAP device"):
            open_link({"SUMMON_TAP_FD": str(read)})
    finally:
        os.close(read)
        os.close(write)


def test_counters_are_written_for_the_instance_stats(tmp_path: Path) -> None:
    path = tmp_path / "net.json"

    async def main() -> None:
        server, client = stack_pair(stats_path=str(path))
        await server.start()
        await client.start()
        with pytest.raises(ConnectionRefusedError):
            await client.open_connection(SERVER_IP, 1)
        server.write_stats()
        first = json.loads(path.read_text())
        assert first["tcp__no_socket_match__respond_rst"] == 1
        assert first == server.counters.snapshot()
        server.close()
        client.close()

    run(main)
    assert not list(tmp_path.glob("*.tmp"))
