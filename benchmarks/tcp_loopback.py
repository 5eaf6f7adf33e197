"""TCP bulk throughput between two summon.net TCP layers in one process, beside the kernel's
TCP over 127.0.0.1 in the same run (the machines are shared and noisy: read the ratio).

    python3 benchmarks/tcp_loopback.py [--megabytes 32]

The in-process path hands each segment straight to the other layer (no loss, no delay), so
the figure is the cost of our TCP itself: parsing, checksums both ways, reassembly, ACKs.
"""

from __future__ import annotations

import argparse
import os
import socket
import threading
import time
from collections import deque

from summon.net.tcp import TCP, DataReceived, EndOfStream

A = bytes((192, 0, 2, 1))  # TEST-NET-1: in memory only
B = bytes((192, 0, 2, 2))


def summon_loopback(data: bytes) -> tuple[float, float]:
    """(wall, CPU) seconds to move data from A to B through two TCP layers."""
    wire: deque[tuple[bytes, bytes, bytes]] = deque()
    clock = [0.0]
    a = TCP(A, lambda p, dst, seg: wire.append((A, dst, seg)), clock=lambda: clock[0])
    b = TCP(B, lambda p, dst, seg: wire.append((B, dst, seg)), clock=lambda: clock[0])
    layers = {A: a, B: b}
    listener = b.listen(80)
    client = a.connect(B, 80)

    def pump_wire() -> None:
        while wire:
            src, dst, seg = wire.popleft()
            layers[dst].receive(src, dst, seg, clock[0])

    pump_wire()
    server = listener.accept()
    assert server is not None
    got = 0
    sent = 0
    start, cpu = time.perf_counter(), time.process_time()
    while got < len(data):
        if sent < len(data):
            sent += a.send(client, data[sent : sent + 262144])
        pump_wire()
        while (event := b.next_event(server)) is not None:
            if isinstance(event, DataReceived):
                got += len(event.data)
        if not wire:  # nothing in flight: let a delayed ACK or timer fire
            clock[0] += 0.01
            a.timers(clock[0])
            b.timers(clock[0])
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    a.close(client)
    pump_wire()
    assert isinstance(b.next_event(server), EndOfStream)
    return elapsed, cpu


def kernel_loopback(data: bytes) -> tuple[float, float]:
    """(wall, CPU) seconds through the kernel's TCP on 127.0.0.1 (the baseline)."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    received = [0]

    def reader() -> None:
        conn, _ = listener.accept()
        with conn:
            while chunk := conn.recv(1 << 20):
                received[0] += len(chunk)

    thread = threading.Thread(target=reader)
    thread.start()
    start, cpu = time.perf_counter(), time.process_time()
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(data)
    thread.join()
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    listener.close()
    assert received[0] == len(data)
    return elapsed, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megabytes", type=int, default=32)
    args = parser.parse_args()
    data = os.urandom(args.megabytes << 20)
    ours = summon_loopback(data)
    kernel = kernel_loopback(data)
    mb = len(data) / 1e6
    print(f"{'what':<36} {'MB/s (wall)':>12} {'MB/s (CPU)':>12}")
    print(f"{'summon.net TCP, in-process A->B':<36} {mb / ours[0]:>12.1f} {mb / ours[1]:>12.1f}")
    print(
        f"{'kernel TCP, 127.0.0.1 (baseline)':<36} {mb / kernel[0]:>12.1f} {mb / kernel[1]:>12.1f}"
    )
    ratio_wall, ratio_cpu = kernel[0] / ours[0], kernel[1] / ours[1]
    print(f"{'ratio (summon.net / kernel)':<36} {ratio_wall:>12.3f} {ratio_cpu:>12.3f}")
    print("(one process does both ends' TCP; the kernel's figure is both ends too)")


if __name__ == "__main__":
    main()
