"""The socket Stack: guest ports mapped to host ports, TCP and UDP over loopback."""

from __future__ import annotations

import asyncio
import errno
import re
import socket

import pytest
from fake_image import free_port

from summon.runtime.socket_stack import UDP_QUEUE_LIMIT, SocketStack, _Datagrams, parse_ports


@pytest.mark.parametrize(
    ("spec", "ports"),
    [
        ("", {}),
        ("80/tcp=8080", {(80, "tcp"): 8080}),
        ("80=8080", {(80, "tcp"): 8080}),
        (
            " 80/tcp=8080 , 53/udp=5353,53/tcp=5354,",
            {(80, "tcp"): 8080, (53, "udp"): 5353, (53, "tcp"): 5354},
        ),
    ],
)
def test_parse_ports(spec: str, ports: dict[tuple[int, str], int]) -> None:
    assert parse_ports(spec) == ports


@pytest.mark.parametrize("spec", ["80", "80/tcp=", "80/sctp=1", "0=1", "80=65536", "x=1", "80=+1"])
def test_parse_ports_errors(spec: str) -> None:
    with pytest.raises(ValueError, match=re.escape(f"SUMMON_PORTS: '{spec}' is not GUEST=HOST")):
        parse_ports(spec)


def test_from_environ() -> None:
    stack = SocketStack.from_environ({"SUMMON_BIND": "127.0.0.1", "SUMMON_PORTS": "80=8080"})
    assert (stack.bind, stack.host_port(80, "tcp"), stack.host_port(80, "udp")) == (
        "127.0.0.1",
        8080,
        80,
    )
    assert SocketStack.from_environ({}).bind == "0.0.0.0"


def test_tcp_server_listens_on_the_mapped_host_port() -> None:
    host_port = free_port()

    async def scenario() -> None:
        stack = SocketStack("127.0.0.1", {(80, "tcp"): host_port})

        async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write((await reader.readline()).upper())
            await writer.drain()
            writer.close()

        async with await stack.start_server(echo, 80) as server:
            assert server.port == 80
            reader, writer = await stack.open_connection("127.0.0.1", host_port)
            writer.write(b"hello\n")
            assert await reader.read() == b"HELLO\n"
            writer.close()
            await writer.wait_closed()
        with pytest.raises(ConnectionRefusedError):  # closed by leaving the block
            await asyncio.open_connection("127.0.0.1", host_port)

    asyncio.run(scenario())


def test_tcp_server_port_0_and_serve_forever() -> None:
    async def scenario() -> None:
        server = await SocketStack("127.0.0.1").start_server(lambda r, w: w.close(), 0)
        assert server.port > 0
        task = asyncio.create_task(server.serve_forever())
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await server.wait_closed()
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection("127.0.0.1", server.port)

    asyncio.run(scenario())


def test_a_port_whose_socket_is_refused_is_an_error_not_a_server_on_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """In the sandbox an app handed its listeners has socket() refused (seccomp, EPERM).
    asyncio skips an address whose socket() fails and serves on none, so start_server on a
    port the app was not handed returned a server: the app went on as if it served there,
    and its clients were refused. It raises now."""

    class Refused(socket.socket):  # as the sandbox's filter answers socket()
        def __init__(
            self, family: int = -1, type: int = -1, proto: int = -1, fileno: int | None = None
        ) -> None:
            if fileno is None:
                raise PermissionError(errno.EPERM, "Operation not permitted")
            super().__init__(family, type, proto, fileno)

    async def scenario() -> None:
        monkeypatch.setattr(socket, "socket", Refused)
        with pytest.raises(OSError, match="cannot listen on port 9002") as refused:
            await SocketStack("127.0.0.1").start_server(lambda r, w: w.close(), 9002)
        assert refused.value.errno == errno.EPERM

    asyncio.run(scenario())


def test_udp_on_the_mapped_host_port() -> None:
    host_port = free_port(socket.SOCK_DGRAM)

    async def scenario() -> None:
        endpoint = await SocketStack("127.0.0.1", {(53, "udp"): host_port}).open_udp(53)
        assert endpoint.port == 53
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            client.bind(("127.0.0.1", 0))
            client.setblocking(False)
            client.sendto(b"ping", ("127.0.0.1", host_port))
            data, addr = await asyncio.wait_for(endpoint.recvfrom(), 5)
            assert (data, addr) == (b"ping", client.getsockname())
            endpoint.sendto(b"pong", addr)
            loop = asyncio.get_running_loop()
            assert await asyncio.wait_for(loop.sock_recv(client, 100), 5) == b"pong"
        endpoint.close()
        endpoint.close()  # safe to repeat

    asyncio.run(scenario())


def test_udp_close_wakes_readers_and_refuses_sends() -> None:
    async def scenario() -> None:
        endpoint = await SocketStack("127.0.0.1").open_udp()
        assert endpoint.port > 0
        readers = [asyncio.create_task(endpoint.recvfrom()) for _ in range(2)]
        await asyncio.sleep(0.01)
        endpoint.close()
        for reader in readers:
            with pytest.raises(EOFError):
                await asyncio.wait_for(reader, 5)
        with pytest.raises(EOFError):
            await endpoint.recvfrom()
        with pytest.raises(OSError) as e:
            endpoint.sendto(b"x", ("127.0.0.1", 9))
        assert e.value.errno == errno.EBADF

    asyncio.run(scenario())


def test_udp_queue_is_bounded() -> None:
    protocol = _Datagrams()
    for i in range(UDP_QUEUE_LIMIT + 10):
        protocol.datagram_received(b"%d" % i, ("127.0.0.1", 9))
    assert (len(protocol.queue), protocol.dropped) == (UDP_QUEUE_LIMIT, 10)
    assert protocol.queue[0] == (b"0", ("127.0.0.1", 9))
