"""The QMP client against a scripted peer on a socketpair (real QEMU: test_qemu_snapshot.py)."""

from __future__ import annotations

import array
import json
import os
import socket
import threading
from collections.abc import Callable, Iterator

import pytest

from summon.targets.qemu.qmp import Qmp, QmpError

GREETING = {"QMP": {"version": {"qemu": {"major": 7, "minor": 2, "micro": 22}}, "capabilities": []}}
Reply = Callable[[dict[str, object], list[int]], list[dict[str, object]]]


class Peer:
    """A fake QEMU monitor: greets, then answers each command with what reply() returns."""

    def __init__(self, sock: socket.socket, reply: Reply) -> None:
        self.sock = sock
        self.reply = reply
        self.seen: list[dict[str, object]] = []
        self.fds: list[int] = []
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def send(self, doc: dict[str, object]) -> None:
        self.sock.sendall(json.dumps(doc).encode() + b"\r\n")

    def run(self) -> None:
        self.send(GREETING)
        buffer = b""
        while True:
            fds = array.array("i")
            try:
                data, ancdata, _, _ = self.sock.recvmsg(4096, socket.CMSG_SPACE(16))
            except OSError:
                return
            for level, kind, payload in ancdata:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    fds.frombytes(payload[: len(payload) - len(payload) % fds.itemsize])
            self.fds += list(fds)
            if not data:
                return
            buffer += data
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                command = json.loads(line)
                self.seen.append(command)
                for doc in self.reply(command, list(fds)):
                    if doc.get("close"):
                        self.sock.close()
                        return
                    self.send(doc)


@pytest.fixture
def pair() -> Iterator[Callable[[Reply], tuple[Qmp, Peer]]]:
    made: list[tuple[Qmp, Peer]] = []

    def make(reply: Reply) -> tuple[Qmp, Peer]:
        ours, theirs = socket.socketpair()
        qmp, peer = Qmp(ours, timeout=2), Peer(theirs, reply)
        made.append((qmp, peer))
        return qmp, peer

    yield make
    for qmp, peer in made:
        qmp.close()
        peer.sock.close()
        for fd in peer.fds:
            os.close(fd)


def answers(command: dict[str, object], fds: list[int]) -> list[dict[str, object]]:
    name = command["execute"]
    if name == "query-status":
        # An event first: the client skips it.
        return [{"event": "RESUME", "timestamp": {}}, {"return": {"status": "paused"}}]
    if name == "cont":
        return [{"error": {"class": "GenericError", "desc": "migration is not finished"}}]
    if name == "getfd":
        return [{"return": {}} if fds else {"error": {"desc": "No file descriptor supplied"}}]
    if name == "human-monitor-command":
        return [{"return": "Could not set up host forwarding rule\r\n"}]
    if name == "quit":
        return [{"close": True}]
    return [{"return": {}}]


def test_handshake_commands_events_and_errors(pair: Callable[[Reply], tuple[Qmp, Peer]]) -> None:
    qmp, peer = pair(answers)
    qmp.handshake()
    assert qmp.greeting == GREETING
    assert qmp.command("query-status") == {"status": "paused"}
    with pytest.raises(QmpError, match="QEMU refused cont: migration is not finished"):
        qmp.command("cont")
    assert (
        qmp.hmp("hostfwd_add net0 tcp:127.0.0.1:1-:80") == "Could not set up host forwarding rule"
    )
    assert [c["execute"] for c in peer.seen] == [
        "qmp_capabilities", "query-status", "cont", "human-monitor-command",
    ]  # fmt: skip
    assert peer.seen[-1]["arguments"] == {"command-line": "hostfwd_add net0 tcp:127.0.0.1:1-:80"}


def test_a_file_descriptor_travels_with_getfd(pair: Callable[[Reply], tuple[Qmp, Peer]]) -> None:
    qmp, peer = pair(answers)
    qmp.handshake()
    r, w = os.pipe()
    try:
        assert qmp.command("getfd", {"fdname": "snap"}, fds=(w,)) == {}
        (received,) = peer.fds
        os.write(received, b"through the passed fd")
        assert os.read(r, 100) == b"through the passed fd"
    finally:
        os.close(r)
        os.close(w)


def test_a_monitor_that_goes_away_is_one_error(pair: Callable[[Reply], tuple[Qmp, Peer]]) -> None:
    qmp, _ = pair(answers)
    qmp.handshake()
    with pytest.raises(QmpError, match="QEMU's monitor closed"):
        qmp.command("quit")
    with pytest.raises(QmpError, match="closed"):  # and stays broken, without waiting again
        qmp.command("query-status")


def test_a_silent_monitor_times_out() -> None:
    ours, theirs = socket.socketpair()
    peer = Peer(theirs, lambda command, fds: [])  # greets, then never answers
    qmp = Qmp(ours, timeout=0.2)
    try:
        with pytest.raises(QmpError, match="did not answer in time"):
            qmp.handshake()
    finally:
        qmp.close()
        peer.sock.close()


def test_a_monitor_that_is_not_qmp_is_refused(pair: Callable[[Reply], tuple[Qmp, Peer]]) -> None:
    ours, theirs = socket.socketpair()
    theirs.sendall(b"QEMU 7.2.22 monitor - type 'help' for more information\r\n")
    qmp = Qmp(ours, timeout=1)
    try:
        with pytest.raises(QmpError, match="not JSON"):
            qmp.handshake()
    finally:
        qmp.close()
        theirs.close()
