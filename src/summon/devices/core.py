"""The core device interfaces: Console, Clock, Random, Stack (Server, UDPEndpoint), KV_RO.

summon.devices re-exports every device; this module is what every app that uses devices
imports, so it imports nothing at run time.
"""

from __future__ import annotations

# Not from typing: importing typing costs ~9 ms at every start.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from asyncio import StreamReader, StreamWriter
    from collections.abc import Awaitable, Callable
    from types import TracebackType

    # A method named `list` hides the builtin inside KV_RO's body, so its return type is
    # spelled through this alias.
    _Keys = list[str]

    # Called with each accepted connection, as asyncio.start_server calls its callback: a
    # plain function, or a coroutine function whose coroutine is run as a task.
    ClientConnected = Callable[[StreamReader, StreamWriter], "Awaitable[None] | None"]

LEVELS = ("debug", "info", "warning", "error")


class Console:
    """Lines of text for whoever watches the app: the instance log.

    Output goes to the process's standard output, one line at a time, flushed as written, so
    lines are never lost or interleaved when the app is stopped. Writing never raises: a log
    line is not worth the app's life.
    """

    def write(self, line: str) -> None:
        """Write `line` as it is, followed by a newline, whatever the level."""
        raise NotImplementedError

    def log(self, level: str, message: str) -> None:
        """Write `message` as a line "LEVEL: message" if `level` is at or above the threshold.

        `level` is one of "debug", "info", "warning", "error"; the threshold is "info" unless
        the environment sets SUMMON_LOG_LEVEL.
        """
        raise NotImplementedError

    def debug(self, message: str) -> None:
        """Log `message` at level "debug": detail wanted only while chasing a problem."""
        self.log("debug", message)

    def info(self, message: str) -> None:
        """Log `message` at level "info": what the app is doing (listening, serving...)."""
        self.log("info", message)

    def warning(self, message: str) -> None:
        """Log `message` at level "warning": something unusual the app survived."""
        self.log("warning", message)

    def error(self, message: str) -> None:
        """Log `message` at level "error": something the app could not do."""
        self.log("error", message)


class Clock:
    """Time, in seconds as floats."""

    def time(self) -> float:
        """Wall-clock time: seconds since 1970-01-01 UTC. May jump when the clock is set."""
        raise NotImplementedError

    def monotonic(self) -> float:
        """Seconds since an unspecified start; never goes back. Use it to measure intervals."""
        raise NotImplementedError

    async def sleep(self, seconds: float) -> None:
        """Return after at least `seconds` of monotonic time; other tasks run meanwhile."""
        raise NotImplementedError


class Random:
    """Unpredictable bytes, good for keys, tokens and sequence numbers."""

    def read(self, n: int) -> bytes:
        """Return `n` random bytes from the kernel's cryptographic generator (getrandom).

        Early in a VM's boot this may wait until the kernel has gathered enough entropy.
        """
        raise NotImplementedError

    def randbelow(self, n: int) -> int:
        """Return a uniformly random integer in [0, n); `n` must be positive."""
        if n <= 0:
            raise ValueError(f"randbelow needs a positive bound, got {n}")
        bits = (n - 1).bit_length()
        size = (bits + 7) // 8
        while True:  # rejection sampling keeps the result unbiased
            value = int.from_bytes(self.read(size), "big") >> (size * 8 - bits)
            if value < n:
                return value


class Server:
    """A listening TCP socket started by Stack.start_server.

    Usable as `async with`: leaving the block closes the server and waits for it to close.
    """

    @property
    def port(self) -> int:
        """The port the app listens on, as the app sees it (the guest port)."""
        raise NotImplementedError

    def close(self) -> None:
        """Stop listening. Connections already accepted stay open: close their writers."""
        raise NotImplementedError

    async def wait_closed(self) -> None:
        """Return once the listening socket is closed (call close() first)."""
        raise NotImplementedError

    async def serve_forever(self) -> None:
        """Wait until the calling task is cancelled; then close the server and re-raise.

        The server accepts connections from the moment start_server returns; this is the
        usual last line of a server's main function.
        """
        raise NotImplementedError

    async def __aenter__(self) -> Server:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
        await self.wait_closed()


class UDPEndpoint:
    """A bound UDP socket started by Stack.open_udp."""

    @property
    def port(self) -> int:
        """The local port, as the app sees it (the guest port, or the one picked for port 0)."""
        raise NotImplementedError

    async def recvfrom(self) -> tuple[bytes, tuple[str, int]]:
        """Wait for the next datagram; return (payload, (sender address, sender port)).

        Datagrams that arrive faster than they are read are queued up to a bound, then
        dropped, as a kernel socket would. Raises EOFError once the endpoint is closed.
        """
        raise NotImplementedError

    def sendto(self, data: bytes, addr: tuple[str, int]) -> None:
        """Send one datagram to (address, port) without waiting.

        Delivery is not confirmed and errors from the network are not reported: this is UDP.
        Raises OSError (EBADF) once the endpoint is closed.
        """
        raise NotImplementedError

    def close(self) -> None:
        """Release the port; wakes every pending recvfrom with EOFError. Safe to repeat."""
        raise NotImplementedError


class Stack:
    """TCP and UDP, shaped like asyncio's streams.

    Ports are the ones the app means (the guest ports); the implementation maps them to
    wherever the target really listens. Readers and writers are asyncio.StreamReader and
    asyncio.StreamWriter, whichever stack carries them.
    """

    async def start_server(
        self, client_connected_cb: ClientConnected, port: int, *, backlog: int = 100
    ) -> Server:
        """Listen on TCP `port` and call `client_connected_cb(reader, writer)` per connection.

        Port 0 picks a free port (see Server.port). The server is accepting when this returns.
        """
        raise NotImplementedError

    async def open_connection(self, host: str, port: int) -> tuple[StreamReader, StreamWriter]:
        """Connect to TCP `port` on `host` (a name or an address); return (reader, writer)."""
        raise NotImplementedError

    async def open_udp(self, port: int = 0) -> UDPEndpoint:
        """Bind UDP `port` (0: any free port) and return the endpoint."""
        raise NotImplementedError


class InvalidKey(KeyError, ValueError):
    """A key no store can hold: empty, absolute, or with an empty, "." or ".." component.

    It is a KeyError, so code that answers "not found" for missing keys answers the same for
    keys that try to leave the store; and a ValueError, for code that wants to tell them apart.
    """

    def __str__(self) -> str:
        # KeyError would show the message quoted, as if it were the key.
        return str(self.args[0]) if self.args else ""


class KV_RO:
    """A read-only key/value store: the files of a folder baked into the image.

    Keys are '/'-separated paths relative to the folder ("css/site.css"); values are the files'
    bytes. Only regular files are keys; folders are not. Every method raises InvalidKey (a
    KeyError) for a key that is empty, absolute (starts with '/'), or has an empty, "." or ".."
    component.
    """

    def get(self, key: str) -> bytes:
        """Return the value of `key`; raise KeyError if there is none."""
        raise NotImplementedError

    def size(self, key: str) -> int:
        """Return the length in bytes of the value of `key`; raise KeyError if there is none."""
        raise NotImplementedError

    def exists(self, key: str) -> bool:
        """Return whether `key` has a value."""
        raise NotImplementedError

    def list(self, prefix: str = "") -> _Keys:
        """Return every key that starts with `prefix` (a plain string prefix), sorted."""
        raise NotImplementedError
