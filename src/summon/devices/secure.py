"""The device interfaces for secrets and TLS: Secrets, TLS and its server and client contexts.

Imported by apps that use them (through summon.devices), and by summon.secrets and summon.tls.
"""

from __future__ import annotations

# Not from typing: importing typing costs ~9 ms at every start.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from asyncio import StreamReader, StreamWriter

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

    Every context refuses TLS 1.0 and 1.1, sends no session tickets, refuses renegotiation
    (TLS 1.2: a warning no_renegotiation alert), and verifies the peer's chain (RFC 5280) and,
    as a client, its name (RFC 6125). A server with alpn refuses a client offering only other
    protocols (no_application_protocol, RFC 7301).
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
