"""The TLS device: contexts built from Secrets, over the backend the image was made with.

    tls = TLSDevice(secrets, backend="python")
    ctx = tls.server(cert="tls.crt", key="tls.key")
    reader, writer = await ctx.wrap(reader, writer)

The backend module is imported when the first context is made, so an image built with
tls="python" never imports ssl, and one built with "openssl" never imports tlslite.
"""

from __future__ import annotations

from summon.devices import TLS, MissingSecret, TLSClientContext, TLSServerContext
from summon.tls.errors import TLSConfigError
from summon.tls.session import Session
from summon.tls.settings import (
    BACKENDS,
    CertKey,
    ClientSettings,
    ServerSettings,
    parse_alpn,
    parse_versions,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from asyncio import StreamReader, StreamWriter

    from summon.devices import Secrets

    _SNI = dict[str, tuple[str, str]]
    _Protocols = tuple[str, ...] | list[str]


def _backend(name: str) -> object:
    if name == "openssl":
        from summon.tls import openssl_backend

        return openssl_backend
    if name == "python":
        from summon.tls import python_backend

        return python_backend
    raise TLSConfigError(f"TLS backend {name!r} is not one of {', '.join(BACKENDS)}")


class ServerContext(TLSServerContext):
    def __init__(self, backend: object, settings: ServerSettings) -> None:
        self.settings = settings
        self._backend = backend.ServerBackend(settings)  # type: ignore[attr-defined]

    def session(self) -> Session:
        return Session(
            server=True,
            versions=self.settings.versions,
            server_engine=self._backend.engine,
            alpn=self.settings.alpn,
        )

    async def wrap(
        self, reader: StreamReader, writer: StreamWriter
    ) -> tuple[StreamReader, StreamWriter]:
        from summon.tls.streams import wrap

        return await wrap(self.session(), reader, writer, self.settings.handshake_timeout)


class ClientContext(TLSClientContext):
    def __init__(self, backend: object, settings: ClientSettings) -> None:
        self.settings = settings
        self._backend = backend.ClientBackend(settings)  # type: ignore[attr-defined]

    def session(self, server_hostname: str) -> Session:
        if not server_hostname:
            raise TLSConfigError("a TLS client needs the server's hostname to verify it")
        backend = self._backend
        return Session(
            server=False,
            versions=self.settings.versions,
            client_engine=lambda: backend.engine(server_hostname),
        )

    async def wrap(
        self, reader: StreamReader, writer: StreamWriter, server_hostname: str
    ) -> tuple[StreamReader, StreamWriter]:
        from summon.tls.streams import wrap

        session = self.session(server_hostname)
        return await wrap(session, reader, writer, self.settings.handshake_timeout)


class TLSDevice(TLS):
    """TLS over `backend` ("openssl" | "python"), with keys read from `secrets` by name."""

    def __init__(self, secrets: Secrets | None, backend: str = "openssl") -> None:
        if backend not in BACKENDS:
            raise TLSConfigError(f"TLS backend {backend!r} is not one of {', '.join(BACKENDS)}")
        self._secrets = secrets
        self._backend_name = backend
        self._contexts: dict[tuple[object, ...], object] = {}

    @property
    def backend(self) -> str:
        return self._backend_name

    def _secret(self, name: str, what: str) -> bytes:
        if self._secrets is None:
            raise MissingSecret(name)
        if not isinstance(name, str):
            raise TLSConfigError(f"{what} must be a secret name (a string), got {type(name)}")
        return self._secrets.get(name)

    def _pem(self, value: str | bytes, what: str) -> bytes:
        return value if isinstance(value, bytes) else self._secret(value, what)

    def _pair(self, cert: str, key: str) -> CertKey:
        pem = self._secret(key, "key")
        if b"-----BEGIN ENCRYPTED PRIVATE KEY-----" in pem or b"Proc-Type: 4,ENCRYPTED" in pem:
            # OpenSSL would ask for the passphrase on the terminal: an app with one waited
            # there, one without raised OSError (EINVAL); tlslite-ng said "not a PEM key".
            raise TLSConfigError(
                f"secret {key!r}: the private key is encrypted with a passphrase, which nobody "
                "can type to an image; give it decrypted (openssl pkey -in KEY -out PLAIN), "
                "as a secret it stays off the image"
            )
        return CertKey(self._secret(cert, "cert"), pem, f"secrets {cert!r}/{key!r}")

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
    ) -> ServerContext:
        cache_key = (
            "server",
            cert,
            key,
            tuple(sorted((sni or {}).items())),
            tuple(alpn),
            client_auth,
            client_ca,
            tuple(versions),
            handshake_timeout,
        )
        cached = self._contexts.get(cache_key)
        if isinstance(cached, ServerContext):
            return cached
        settings = ServerSettings(
            default=self._pair(cert, key),
            by_name={name: self._pair(c, k) for name, (c, k) in (sni or {}).items()},
            alpn=parse_alpn(alpn),
            client_auth=client_auth,
            client_ca=self._pem(client_ca, "client_ca") if client_ca is not None else None,
            versions=parse_versions(versions),
            handshake_timeout=handshake_timeout,
        )
        context = ServerContext(_backend(self._backend_name), settings)
        self._contexts[cache_key] = context
        return context

    def client(
        self,
        *,
        ca: str | bytes | None = None,
        cert: str | None = None,
        key: str | None = None,
        alpn: _Protocols = (),
        versions: _Protocols = ("1.2", "1.3"),
        handshake_timeout: float = 10.0,
    ) -> ClientContext:
        if (cert is None) != (key is None):
            raise TLSConfigError("a client certificate needs both cert= and key= secret names")
        cache_key = ("client", ca, cert, key, tuple(alpn), tuple(versions), handshake_timeout)
        cached = self._contexts.get(cache_key)
        if isinstance(cached, ClientContext):
            return cached
        settings = ClientSettings(
            ca=self._pem(ca, "ca") if ca is not None else None,
            cert=self._pair(cert, key) if cert is not None and key is not None else None,
            alpn=parse_alpn(alpn),
            versions=parse_versions(versions),
            handshake_timeout=handshake_timeout,
        )
        context = ClientContext(_backend(self._backend_name), settings)
        self._contexts[cache_key] = context
        return context
