"""The socket Stack: guest ports mapped to host ports, TCP and UDP over loopback."""

from __future__ import annotations

import asyncio
import errno
import re
import socket

import pytest
from fake_image import free_port

from summon.runtime.socket_stack import (
    UDP_QUEUE_LIMIT,
    SocketStack,
    _Datagrams,
    parse_ports,
    published_ports,
)


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


def test_a_port_the_sandbox_does_not_publish_gets_no_listener_and_a_line_saying_so(
    capfd: pytest.CaptureFixture[str],
) -> None:
    # `summon run http` without -p in the sandbox: the app's own listener could be reached
    # by nothing, and its socket() (the recording run was handed its listeners) was refused
    # with a line telling the user to add syscalls = ["socket"], which was no help.
    free = free_port()

    async def scenario() -> None:
        stack = SocketStack.from_environ(
            {"SUMMON_BIND": "127.0.0.1", "SUMMON_PORTS": f"80={free}", "SUMMON_PUBLISHED": ""}
        )
        server = await stack.start_server(lambda r, w: w.close(), 80)
        assert server.port == 80
        with pytest.raises(ConnectionRefusedError):  # no listener made
            await asyncio.open_connection("127.0.0.1", free)
        task = asyncio.create_task(server.serve_forever())  # serves until closed
        await asyncio.sleep(0.01)
        assert not task.done()
        server.close()
        await task
        await server.wait_closed()

    asyncio.run(scenario())
    assert capfd.readouterr().err == (
        "summon: port 80 is not published: this run has no -p for it, so nothing reaches "
        "it (summon run -p HOST_PORT:80)\n"
    )


def test_a_published_port_without_a_handed_listener_is_bound_as_before() -> None:
    # Forwarded rather than handed (a WSGI app's port the manifest does not list): bound.
    free = free_port()

    async def scenario() -> None:
        stack = SocketStack("127.0.0.1", {(80, "tcp"): free}, published=frozenset({80}))
        async with await stack.start_server(lambda r, w: w.close(), 80):
            _reader, writer = await asyncio.open_connection("127.0.0.1", free)
            writer.close()

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("environ", "ports"),
    [
        ({}, None),
        ({"SUMMON_PUBLISHED": ""}, frozenset()),
        ({"SUMMON_PUBLISHED": "80 443"}, {80, 443}),
    ],
)
def test_published_ports(environ: dict[str, str], ports: frozenset[int] | None) -> None:
    assert published_ports(environ) == ports


def test_published_ports_refuses_what_is_not_a_port() -> None:
    with pytest.raises(ValueError, match="SUMMON_PUBLISHED"):
        published_ports({"SUMMON_PUBLISHED": "80 http"})


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
