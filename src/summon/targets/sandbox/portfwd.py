"""Userland port forwarding from host loopback into an instance's network namespace.

The forwarder binds its listeners in the host's namespace, then its own thread moves into the
instance's namespace for good: every socket that thread makes from then on (one per client,
to connect to the app) is made inside, while the listeners and the sockets they accept stay in
the host's namespace they were made in. Bytes are copied both ways. The instance's namespace
has only lo, and the host gains no address or interface. The asyncio loop runs on that thread
of its own, so callers need not be async.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import threading
import time
from collections.abc import Callable, Coroutine, Sequence
from concurrent.futures import Future
from pathlib import Path
from types import TracebackType
from typing import Any

from summon.targets.base import PortForward
from summon.targets.sandbox.listen import listen
from summon.targets.sandbox.netns import setns
from summon.threads import block_signals_in_thread

GUEST_ADDR = "127.0.0.1"
CHUNK = 64 * 1024
# While the app is still starting, its port refuses: hold the client and retry this long.
CONNECT_PATIENCE = 10.0
UDP_IDLE = 60.0  # seconds a client's inside UDP socket lives without traffic
UDP_MAX_CLIENTS = 256  # past this the longest-idle client's inside socket is dropped
# Polled at most 10 ms apart: a longer step would add its length to every cold start, and a
# refused connect on loopback costs microseconds.
_RETRY_FIRST, _RETRY_MAX = 0.002, 0.01
_Addr = tuple[Any, ...]


class PortForwarder:
    """Forwards each PortForward from the host into the namespace at netns_path.

    start() binds every listener before returning, so a port in use fails there (OSError);
    stop() is idempotent. Also a context manager.
    """

    def __init__(
        self,
        netns_path: Path,
        forwards: Sequence[PortForward],
        connect_patience: float = CONNECT_PATIENCE,
        guest_addr: str = GUEST_ADDR,
        say: Callable[[str], None] | None = None,
    ) -> None:
        """guest_addr: where the app listens inside the namespace (its loopback, or the
        direct stack's address beyond a TAP); say: where to tell, once a port, that a client
        was closed because nothing listened on its guest port."""
        for fwd in forwards:
            if fwd.protocol not in ("tcp", "udp"):
                raise ValueError(f"cannot forward {fwd}: protocol must be tcp or udp")
        self.netns_path = netns_path
        self.forwards = tuple(forwards)
        self.connect_patience = connect_patience
        self.guest_addr = guest_addr
        self.say = say
        self._unreached: set[int] = set()  # guest ports said to be unreached
        self.bound: dict[PortForward, tuple[str, int]] = {}
        self._listeners: list[tuple[PortForward, socket.socket]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._inside_fd = -1
        self._tasks: set[asyncio.Task[None]] = set()
        self._open: set[socket.socket] = set()
        self._stopped = False
        self._lock = threading.Lock()

    def __enter__(self) -> PortForwarder:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        try:
            self._inside_fd = os.open(self.netns_path, os.O_RDONLY | os.O_CLOEXEC)
            for fwd in self.forwards:
                sock = _listener(fwd)
                self._listeners.append((fwd, sock))
                host, port = sock.getsockname()[:2]
                self.bound[fwd] = (host, port)
            ready: Future[None] = Future()
            self._thread = threading.Thread(
                target=self._run, args=(ready,), name="summon-portfwd", daemon=True
            )
            self._thread.start()
            ready.result()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Close every listener and connection and end the thread. Idempotent."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
        loop, thread = self._loop, self._thread
        if loop is not None and thread is not None and thread.is_alive():
            # RuntimeError: the loop closed meanwhile; TimeoutError: stop it all the same.
            with contextlib.suppress(RuntimeError, TimeoutError):
                asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(timeout=5)
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(loop.stop)
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)
        for _fwd, sock in self._listeners:
            sock.close()
        if self._inside_fd >= 0:
            os.close(self._inside_fd)
            self._inside_fd = -1

    # --- the loop thread -------------------------------------------------------------------

    def _run(self, ready: Future[None]) -> None:
        block_signals_in_thread()
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            # setns moves only this thread. Listeners are bound already (by start(), in the
            # caller's namespace), and this thread makes no host socket ever after.
            setns(self._inside_fd)
            for fwd, sock in self._listeners:
                serve = self._serve_tcp if fwd.protocol == "tcp" else self._serve_udp
                self._spawn(loop, serve(sock))
        except BaseException as e:
            loop.close()
            ready.set_exception(e)
            return
        ready.set_result(None)
        try:
            loop.run_forever()
        finally:
            loop.close()

    def _spawn(self, loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, None]) -> None:
        task = loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _shutdown(self) -> None:
        tasks = [t for t in self._tasks if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for sock in list(self._open):
            sock.close()

    def _inside_socket(self, family: int, kind: int) -> socket.socket:
        """A socket in the instance's namespace: only call it on the loop thread."""
        assert threading.current_thread() is self._thread, "inside sockets need the loop thread"
        sock = socket.socket(family, kind)
        sock.setblocking(False)
        return sock

    # --- TCP ---------------------------------------------------------------------------------

    async def _serve_tcp(self, listener: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        fwd = next(f for f, s in self._listeners if s is listener)
        while True:
            try:
                client, _addr = await loop.sock_accept(listener)
            except OSError:
                await asyncio.sleep(0.05)  # EMFILE and friends: back off, keep serving
                continue
            client.setblocking(False)
            self._spawn(loop, self._tcp_session(client, fwd))

    async def _connect_inside(self, port: int) -> socket.socket | None:
        loop = asyncio.get_running_loop()
        deadline = time.monotonic() + self.connect_patience
        delay = _RETRY_FIRST
        while True:
            sock = self._inside_socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                await loop.sock_connect(sock, (self.guest_addr, port))
                return sock
            except (ConnectionRefusedError, ConnectionResetError):
                sock.close()
            except BaseException:
                sock.close()
                raise
            if time.monotonic() + delay > deadline:
                return None
            await asyncio.sleep(delay)
            delay = min(delay * 2, _RETRY_MAX)

    async def _tcp_session(self, client: socket.socket, fwd: PortForward) -> None:
        self._open.add(client)
        inside: socket.socket | None = None
        try:
            inside = await self._connect_inside(fwd.guest_port)
            if inside is None:
                self._say_unreached(fwd)
                return
            self._open.add(inside)
            await asyncio.gather(_pump(client, inside), _pump(inside, client))
        except OSError:
            pass
        finally:
            for sock in (client, inside):
                if sock is not None:
                    self._open.discard(sock)
                    sock.close()

    def _say_unreached(self, fwd: PortForward) -> None:
        """Say once a port why its clients are closed: an app listening on another port than
        the one forwarded to left them waiting the patience out and closed, and nothing said."""
        if self.say is None or fwd.guest_port in self._unreached:
            return
        self._unreached.add(fwd.guest_port)
        from summon.build.undeclared import listening

        # This thread is in the instance's namespace: its own /proc view lists its sockets.
        others = sorted({p for _, p in listening("thread-self")} - {fwd.guest_port})
        host, port = self.bound.get(fwd, (fwd.host_addr, fwd.host_port))
        where = (
            f"; the app listens on TCP port {', '.join(map(str, others))}: forward to that "
            f"or make the app listen on {fwd.guest_port}"
            if others
            else ""
        )
        self.say(
            f"summon: nothing listened on port {fwd.guest_port} in the instance for "
            f"{self.connect_patience:g} s, so a client of {host}:{port} was closed{where}"
        )

    # --- UDP ---------------------------------------------------------------------------------

    async def _serve_udp(self, host_sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        fwd = next(f for f, s in self._listeners if s is host_sock)
        clients: dict[_Addr, _UdpClient] = {}
        try:
            while True:
                try:
                    data, addr = await loop.sock_recvfrom(host_sock, CHUNK)
                except OSError:
                    await asyncio.sleep(0.01)  # a stray ICMP error or such: keep serving
                    continue
                client = clients.get(addr)
                if client is None:
                    if len(clients) >= UDP_MAX_CLIENTS:
                        oldest = min(clients, key=lambda a: clients[a].last_seen)
                        self._drop_udp_client(clients, oldest)
                    client = self._udp_client(host_sock, addr, fwd.guest_port, clients)
                client.last_seen = time.monotonic()
                with contextlib.suppress(OSError):
                    await loop.sock_sendall(client.sock, data)
        finally:
            for addr in list(clients):
                self._drop_udp_client(clients, addr)

    def _drop_udp_client(self, clients: dict[_Addr, _UdpClient], addr: _Addr) -> None:
        client = clients.pop(addr)
        if client.task is not asyncio.current_task():
            client.task.cancel()
        self._open.discard(client.sock)
        client.sock.close()

    def _udp_client(
        self,
        host_sock: socket.socket,
        addr: _Addr,
        port: int,
        clients: dict[_Addr, _UdpClient],
    ) -> _UdpClient:
        loop = asyncio.get_running_loop()
        sock = self._inside_socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.connect((self.guest_addr, port))  # a UDP connect only records the peer
        client = _UdpClient(sock)
        clients[addr] = client
        self._open.add(sock)

        async def relay_replies() -> None:
            try:
                while True:
                    idle_left = client.last_seen + UDP_IDLE - time.monotonic()
                    if idle_left <= 0:
                        return
                    try:
                        reply = await asyncio.wait_for(loop.sock_recv(sock, CHUNK), idle_left)
                    except TimeoutError:
                        continue
                    except ConnectionRefusedError:
                        continue  # nothing listens inside yet: the client will retry
                    client.last_seen = time.monotonic()
                    await loop.sock_sendto(host_sock, reply, addr)
            finally:
                if clients.get(addr) is client:
                    self._drop_udp_client(clients, addr)

        client.task = loop.create_task(relay_replies())
        self._tasks.add(client.task)
        client.task.add_done_callback(self._tasks.discard)
        return client


class _UdpClient:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.last_seen = time.monotonic()
        self.task: asyncio.Task[None]


def _listener(fwd: PortForward) -> socket.socket:
    sock = listen(fwd)
    sock.setblocking(False)
    return sock


async def _pump(src: socket.socket, dst: socket.socket) -> None:
    """Copy src to dst until src's EOF, then pass the EOF on (half-close)."""
    loop = asyncio.get_running_loop()
    try:
        while data := await loop.sock_recv(src, CHUNK):
            await loop.sock_sendall(dst, data)
    except OSError:
        # One side broke: reset both so the other pump and both peers notice now.
        for sock in (src, dst):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        return
    with contextlib.suppress(OSError):
        dst.shutdown(socket.SHUT_WR)
