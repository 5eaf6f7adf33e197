"""A fresh DirectStack comes up ready: the peer's very first SYN is answered, never resent.

The runtime awaits `stack.start()` before the app's entry runs (summon.runtime.init), so the
link is read, the address set and announced (ARP) before the app's first listen returns. The
peer here is summon.net's own sans-IO Interface and TCP on the other end of a memory link,
driven with the event loop's time: a SYN or ARP request left unanswered would be resent
after a second, and its counters would show it.
"""

from __future__ import annotations

import asyncio
import os

from summon.net.arp import ArpPacket
from summon.net.ethernet import BROADCAST, ETHERTYPE_ARP, EthernetFrame
from summon.net.interface import Interface
from summon.net.ipv4 import PROTO_TCP, parse_address
from summon.net.links import Link
from summon.net.links.memory import MemoryLink, VirtualClock, memory_link_pair
from summon.net.stack import DirectStack
from summon.net.tcp import TCP
from summon.net.tcp.wire import SYN

STACK_IP, PEER_IP = parse_address("192.0.2.1"), parse_address("192.0.2.2")  # TEST-NET-1
STACK_MAC, PEER_MAC = b"\x02\0\0\0\0\x01", b"\x02\0\0\0\0\x02"


class PolledMemoryLink(Link):
    """A memory link end with an fd that polls readable while frames are due, since the
    stack watches its link with loop.add_reader; `wake()` after moving the clock."""

    def __init__(self, inner: MemoryLink) -> None:
        self.inner = inner
        self._r, self._w = os.pipe()
        os.set_blocking(self._r, False)

    def fileno(self) -> int:
        return self._r

    def send(self, frame: bytes) -> None:
        self.inner.send(frame)

    def receive(self) -> list[bytes]:
        try:
            os.read(self._r, 4096)
        except BlockingIOError:
            pass
        return self.inner.receive()

    def wake(self, now: float) -> None:
        due = self.inner.next_arrival()
        if due is not None and due <= now:
            os.write(self._w, b"!")

    def close(self) -> None:
        if self._r >= 0:
            os.close(self._r)
            os.close(self._w)
            self._r = self._w = -1


class Peer:
    """Interface + TCP on the far end, driven by hand with the loop's clock."""

    def __init__(self, link: MemoryLink, clock: VirtualClock) -> None:
        self.link = link
        self.clock = clock
        self.iface = Interface(PEER_MAC, PEER_IP, 24)
        self.tcp = TCP(PEER_IP, self.iface.send_ip, counters=self.iface.counters)
        self.iface.register_transport(PROTO_TCP, self.tcp.receive, self.tcp.receive_error)
        self.syns_sent = 0
        self.frames_seen: list[bytes] = []

    def step(self, now: float) -> None:
        self.clock.now = max(self.clock.now, now)
        for frame in self.link.receive():
            self.frames_seen.append(frame)
            self.iface.receive_frame(frame, now)
        self.iface.timers(now)
        self.tcp.timers(now)
        self.flush()

    def flush(self) -> None:
        for frame in self.iface.frames_to_send():
            eth = EthernetFrame.parse(frame)
            # A TCP segment with SYN alone: byte 13 of the TCP header, after 20 of IPv4.
            if eth.ethertype == 0x0800 and eth.payload[9] == PROTO_TCP:
                if eth.payload[20 + 13] & 0x3F == SYN:
                    self.syns_sent += 1
            self.link.send(frame)


def test_a_fresh_stack_answers_the_first_syn_with_no_retransmission_from_the_peer() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        ours, theirs, clock = memory_link_pair(seed=1, clock=VirtualClock(loop.time()))
        link = PolledMemoryLink(ours)
        stack = DirectStack(link, STACK_MAC, ip=STACK_IP, mtu=1500)
        peer = Peer(theirs, clock)
        accepted: list[object] = []
        try:
            # The client tries before the instance is up: its ARP request is on the wire.
            conn = peer.tcp.connect(STACK_IP, 80, now=loop.time())
            peer.flush()
            # What the runtime does before the entry, then the app's first listen: nothing
            # in between yields to the loop, so no frame is read before the listener exists.
            await stack.start()
            await stack.start_server(lambda r, w: accepted.append(w), 80)
            for _ in range(2000):
                now = loop.time()
                peer.step(now)
                link.wake(now)
                if conn.state == "ESTABLISHED" and accepted:
                    break
                await asyncio.sleep(0.002)
            assert conn.state == "ESTABLISHED" and len(accepted) == 1
            counters = peer.iface.counters
            assert peer.syns_sent == 1
            assert counters["tcp__retransmit"] == 0
            assert counters["tcp__retransmit__timeout"] == 0
            assert counters["arp__request__send"] <= 1  # answered at once, never resent
            assert stack.counters["tcp__listen__syn_received"] == 1
            # The stack announced itself (RFC 5227) as it came up.
            announcements = [
                ArpPacket.parse(EthernetFrame.parse(f).payload)
                for f in peer.frames_seen
                if EthernetFrame.parse(f).ethertype == ETHERTYPE_ARP
                and EthernetFrame.parse(f).dst == BROADCAST
            ]
            assert [(a.sender_ip, a.target_ip) for a in announcements] == [(STACK_IP, STACK_IP)]
        finally:
            stack.close()

    asyncio.run(scenario())


def test_a_restored_snapshot_redraws_the_stacks_secrets() -> None:
    """A VM restored from a snapshot resumes every sibling from the same memory; the stack's
    resume hook draws its SYN-cookie keys, first IP identification and UDP ephemeral start
    again (summon.runtime.resume), so one sibling's cookies do not forge another's."""
    from summon.runtime import resume

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        ours, _theirs, _clock = memory_link_pair(seed=1, clock=VirtualClock(loop.time()))
        stack = DirectStack(PolledMemoryLink(ours), STACK_MAC, ip=STACK_IP, mtu=1500)
        try:
            await stack.start()
            await stack.start_server(lambda r, w: None, 80)
            listeners = [
                o for o, h in stack._handlers.items() if type(h).__name__ == "DirectServer"
            ]
            assert len(listeners) == 1
            assert stack.iface is not None
            before = (
                listeners[0]._cookie_key,  # type: ignore[union-attr]
                stack.iface._ident,
                stack.iface.udp._next,
            )
            assert resume.resumed() == []
            after = (
                listeners[0]._cookie_key,  # type: ignore[union-attr]
                stack.iface._ident,
                stack.iface.udp._next,
            )
            assert after[0] != before[0]
            # 16-bit values: equal by chance once in 65536, not twice.
            assert (after[1], after[2]) != (before[1], before[2])
        finally:
            stack.close()
        # A closed stack's hook is gone: nothing holds it alive.
        assert stack._renew_after_restore not in resume._hooks

    asyncio.run(scenario())
