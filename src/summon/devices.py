"""The device interfaces an app's entry function asks for by parameter annotation.

An app is written against these classes, never against an implementation:

    from summon.devices import Console, KV_RO, Stack

    async def main(stack: Stack, static: KV_RO, log: Console) -> None: ...

The runtime (summon.runtime.init) reads the annotations, builds the implementation the image
was configured for (host sockets or the pure-Python stack, a baked-in folder...) and passes it
in. Each class here is an interface: its methods raise NotImplementedError, except the few
written in terms of the others.

This module is copied into every image and imported by every app that uses devices, so it
imports nothing at run time.
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

__all__ = [
    "KV_RO",
    "Clock",
    "Console",
    "InvalidKey",
    "Random",
    "Server",
    "Stack",
    "UDPEndpoint",
]

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


__all__ += [
    "TLS",
    "InvalidSecretName",
    "MissingSecret",
    "Secrets",
    "TLSClientContext",
    "TLSServerContext",
]

if TYPE_CHECKING:
    from summon.tls.session import Session as TLSSession

    # Secrets.names and TLS.server's sni are spelled through aliases, like KV_RO.list.
    _Names = list[str]
    _SNI = dict[str, tuple[str, str]]
    _Protocols = tuple[str, ...] | list[str]


class MissingSecret(KeyError):
    """A secret the app asked for was not given to this instance.

    The message names the secret and how to give it: `summon run --secret NAME=FILE`, or
    `secrets = ["NAME"]` for a gateway service.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(
            f"secret {name!r} was not given to this instance: pass it with "
            f'`summon run --secret {name}=FILE` (or secrets = ["{name}"] in a gateway service)'
        )

    def __str__(self) -> str:
        return str(self.args[0])


class InvalidSecretName(KeyError, ValueError):
    """A secret name no instance can have: empty, with '/', '\\' or NUL, or "." / ".."."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class Secrets:
    """Named secrets (keys, tokens, certificates) given to an instance at run time.

    Secrets are never part of an image: `summon run --secret NAME=FILE` hands them to one run
    (a read-only tmpfs in the sandbox, a per-run drive in a VM). A name is one path component:
    "tls.key", "api-token". Values are read when asked for, each time, and never logged.
    """

    def get(self, name: str) -> bytes:
        """The value of secret `name`.

        Raises InvalidSecretName (a KeyError) for a name with '/', '\\', NUL, or that is empty,
        "." or ".."; MissingSecret (a KeyError) if this instance was not given it.
        """
        raise NotImplementedError

    def names(self) -> _Names:
        """The names of every secret this instance was given, sorted."""
        raise NotImplementedError


class TLSServerContext:
    """How a server answers TLS handshakes; made by TLS.server() and reused per connection."""

    async def wrap(
        self, reader: StreamReader, writer: StreamWriter
    ) -> tuple[StreamReader, StreamWriter]:
        """Run the server handshake over a Stack flow; return the plaintext (reader, writer).

        The returned pair has asyncio's stream API. Once the handshake is done,
        `writer.get_extra_info("tls")` is the summon.tls.events.HandshakeComplete (version,
        cipher, alpn, server_name, peer_certificate). Raises summon.tls.errors' typed errors:
        HandshakeFailure (and its subclasses ProtocolVersionRefused, BadCertificate,
        HandshakeTimeout) or ProtocolViolation; the flow is closed when it raises. Errors
        after the handshake are raised by reader.read...() and writer.drain().
        """
        raise NotImplementedError

    def session(self) -> TLSSession:
        """A sans-IO summon.tls.session.Session for one connection, to drive by hand."""
        raise NotImplementedError


class TLSClientContext:
    """How a client connects over TLS; made by TLS.client() and reused per connection."""

    async def wrap(
        self, reader: StreamReader, writer: StreamWriter, server_hostname: str
    ) -> tuple[StreamReader, StreamWriter]:
        """Run the client handshake over a Stack flow to `server_hostname` (a DNS name, sent as
        SNI and checked against the certificate's DNS SANs, or an IP literal, checked against
        its IP SANs); return the plaintext (reader, writer). Errors as TLSServerContext.wrap;
        a certificate that does not name `server_hostname` is BadCertificate("hostname
        mismatch").
        """
        raise NotImplementedError

    def session(self, server_hostname: str) -> TLSSession:
        """A sans-IO summon.tls.session.Session for one connection; call start() first."""
        raise NotImplementedError


class TLS:
    """TLS 1.2 and 1.3 over any Stack flow, as server or client.

    Certificates and keys come from Secrets, by name, so no key is ever in an image. The
    backend is chosen per image: "openssl" (the stdlib ssl module) or "python" (tlslite-ng,
    pure Python, no libssl/libcrypto; slow and not constant-time: see docs/tls.md).

        ctx = tls.server(cert="tls.crt", key="tls.key", alpn=["http/1.1"])

        async def on_connection(reader, writer):
            reader, writer = await ctx.wrap(reader, writer)
            ...

    Every context refuses TLS 1.0 and 1.1, sends no session tickets, refuses renegotiation,
    and verifies the peer's chain (RFC 5280) and, as a client, its name (RFC 6125).
    """

    @property
    def backend(self) -> str:
        """The backend's name: "openssl" or "python"."""
        raise NotImplementedError

    def server(
        self,
        cert: str = "tls.crt",
        key: str = "tls.key",
        *,
        sni: _SNI | None = None,
        alpn: _Protocols = (),
        client_auth: str = "none",
        client_ca: str | bytes | None = None,
        versions: _Protocols = ("1.2", "1.3"),
        handshake_timeout: float = 10.0,
    ) -> TLSServerContext:
        """A server context. Reads every secret now, so a missing one fails at start.

        cert, key: names of secrets holding the PEM chain (leaf first) and PEM private key used
            when the client sends no SNI name or one not in `sni`.
        sni: {"name.example": (cert_secret, key_secret)}; "*.example" keys match one label.
        alpn: protocols offered, in order of preference, e.g. ["h2", "http/1.1"].
        client_auth: "none"; "optional" (a certificate, if sent, must verify); "required"
            (no certificate is BadCertificate("no certificate")).
        client_ca: the trust anchor(s) client certificates must chain to: a secret name, or
            PEM bytes (public CA certificates need not be secret).
        versions: "1.2" and/or "1.3".
        handshake_timeout: seconds a handshake may take in all (slowloris defence).

        Raises summon.tls.errors.TLSConfigError (a ValueError) naming what is wrong, and
        MissingSecret for a secret not given.
        """
        raise NotImplementedError

    def client(
        self,
        *,
        ca: str | bytes | None = None,
        cert: str | None = None,
        key: str | None = None,
        alpn: _Protocols = (),
        versions: _Protocols = ("1.2", "1.3"),
        handshake_timeout: float = 10.0,
    ) -> TLSClientContext:
        """A client context.

        ca: trust anchors: a secret name or PEM bytes; None means the system's store with the
            openssl backend, and is a TLSConfigError with the python backend (it has none).
        cert, key: secret names of a client certificate chain and key, for servers that ask.
        alpn, versions, handshake_timeout: as for server().
        """
        raise NotImplementedError

    async def wrap_server(
        self, reader: StreamReader, writer: StreamWriter
    ) -> tuple[StreamReader, StreamWriter]:
        """self.server().wrap(reader, writer): the default certificate "tls.crt"/"tls.key"."""
        return await self.server().wrap(reader, writer)

    async def wrap_client(
        self,
        reader: StreamReader,
        writer: StreamWriter,
        server_hostname: str,
        *,
        ca: str | bytes | None = None,
    ) -> tuple[StreamReader, StreamWriter]:
        """self.client(ca=ca).wrap(reader, writer, server_hostname)."""
        return await self.client(ca=ca).wrap(reader, writer, server_hostname)
