"""TCP on the real lower layers: two Interfaces (Ethernet, ARP, IPv4) joined frame by frame,
wired through the transport contract of docs/net.md, with ICMP errors coming back up."""

from __future__ import annotations

import random

from tcp_path import VirtualClock

from summon.net.interface import Interface
from summon.net.tcp import TCP, ConnectionClosed, DataReceived, EndOfStream, TCPConfig

IP_A = bytes((192, 0, 2, 1))
IP_B = bytes((192, 0, 2, 2))


class Wire:
    """Frames go from one interface to the other after 1 ms."""

    def __init__(self) -> None:
        self.clock = VirtualClock()
        self.ifaces = [
            Interface(b"\x02\0\0\0\0\x01", IP_A, 24, mtu=1500),
            Interface(b"\x02\0\0\0\0\x02", IP_B, 24, mtu=1500),
        ]
        self.tcps = []
        for iface in self.ifaces:
            tcp = TCP(
                iface.ip,
                iface.send_ip,
                counters=iface.counters,
                clock=self.clock,
                config=TCPConfig(mss=iface.mtu - 40),
            )
            iface.register_transport(6, tcp.receive, tcp.receive_error)
            self.tcps.append(tcp)
        self.in_flight: list[tuple[float, int, bytes]] = []

    def step(self) -> bool:
        for i, iface in enumerate(self.ifaces):
            for frame in iface.frames_to_send():
                self.in_flight.append((self.clock.now + 0.001, 1 - i, frame))
        deadlines = [t for x in (*self.ifaces, *self.tcps) if (t := x.next_deadline()) is not None]
        deadlines += [t for t, _, _ in self.in_flight]
        if not deadlines:
            return False
        self.clock.now = max(self.clock.now, min(deadlines))
        now = self.clock.now
        due = [f for f in self.in_flight if f[0] <= now]
        self.in_flight = [f for f in self.in_flight if f[0] > now]
        for _, to, frame in due:
            self.ifaces[to].receive_frame(frame, now)
        for x in (*self.ifaces, *self.tcps):
            x.timers(now)
        return True


def test_transfer_over_ethernet_arp_and_ipv4() -> None:
    wire = Wire()
    a, b = wire.tcps
    listener = b.listen(80)
    client = a.connect(IP_B, 80)
    up = random.Random(1).randbytes(200_000)
    got = bytearray()
    server = None
    sent = 0
    eof = False
    for _ in range(100_000):
        if server is None:
            server = listener.accept()
        if client.state == "ESTABLISHED" and sent < len(up):
            sent += a.send(client, up[sent : sent + 65536])
            if sent == len(up):
                a.close(client)
        while server is not None and (event := b.next_event(server)) is not None:
            if isinstance(event, DataReceived):
                got += event.data
            eof = eof or isinstance(event, EndOfStream)
        if eof:
            break
        assert wire.step()
    assert bytes(got) == up
    assert wire.ifaces[0].counters["arp__request__send"] == 1  # ARP resolved B, once
    assert a.counters["tcp__segment_out"] > len(up) // 1460


def test_connect_to_a_closed_port_is_refused() -> None:
    wire = Wire()
    a, _ = wire.tcps
    client = a.connect(IP_B, 81)
    while client.state != "CLOSED":
        assert wire.step()
    assert a.next_event(client) == ConnectionClosed("refused")
    assert wire.tcps[1].counters["tcp__no_socket_match__respond_rst"] == 1
