"""What a TLS context was configured with, checked once, in the form both backends read.

The device (device.py) reads certificates and keys from Secrets by name and builds these; the
backends turn them into their own objects (ssl.SSLContext, tlslite-ng key classes).
"""

from __future__ import annotations

from summon.tls.errors import TLSConfigError

VERSIONS = {"1.2": 0x0303, "1.3": 0x0304}
CLIENT_AUTH = ("none", "optional", "required")
BACKENDS = ("openssl", "python")


def parse_versions(versions: tuple[str, ...] | list[str]) -> tuple[int, ...]:
    """("1.2", "1.3") -> (0x0303, 0x0304); anything else is a TLSConfigError."""
    if isinstance(versions, str) or not versions:
        raise TLSConfigError(
            f"versions must be a non-empty list such as ['1.2', '1.3'], got {versions!r}"
        )
    out = []
    for v in versions:
        if v not in VERSIONS:
            raise TLSConfigError(
                f"TLS version {v!r} is not supported: use '1.2' and/or '1.3' "
                "(TLS 1.0 and 1.1 are refused)"
            )
        out.append(VERSIONS[v])
    return tuple(sorted(set(out)))


def parse_alpn(alpn: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    if isinstance(alpn, str):
        raise TLSConfigError(f"alpn must be a list of protocol names, got the string {alpn!r}")
    for name in alpn:
        if not name or len(name.encode()) > 255:
            raise TLSConfigError(f"ALPN protocol name {name!r} must be 1 to 255 bytes")
    return tuple(alpn)


class CertKey:
    """A certificate chain (PEM, leaf first) and its private key (PEM), and where they came
    from (secret names, for messages; never the bytes)."""

    __slots__ = ("chain", "key", "source")

    def __init__(self, chain: bytes, key: bytes, source: str) -> None:
        self.chain = chain
        self.key = key
        self.source = source

    def __repr__(self) -> str:
        return f"CertKey({self.source})"  # never the key


class ServerSettings:
    """A server context: the default certificate, per-name ones (SNI), ALPN, client auth."""

    __slots__ = ("alpn", "certs", "client_auth", "client_ca", "handshake_timeout", "versions")

    def __init__(
        self,
        *,
        default: CertKey,
        by_name: dict[str, CertKey],
        alpn: tuple[str, ...],
        client_auth: str,
        client_ca: bytes | None,
        versions: tuple[int, ...],
        handshake_timeout: float,
    ) -> None:
        if client_auth not in CLIENT_AUTH:
            raise TLSConfigError(
                f"client_auth {client_auth!r} is not one of {', '.join(CLIENT_AUTH)}"
            )
        if client_auth != "none" and client_ca is None:
            raise TLSConfigError(
                f"client_auth={client_auth!r} needs client_ca: the secret holding the CA "
                "certificate(s) client certificates must chain to"
            )
        if handshake_timeout <= 0:
            raise TLSConfigError(f"handshake_timeout must be positive, got {handshake_timeout}")
        self.certs = {"": default, **{k.lower().rstrip("."): v for k, v in by_name.items()}}
        self.alpn = alpn
        self.client_auth = client_auth
        self.client_ca = client_ca
        self.versions = versions
        self.handshake_timeout = handshake_timeout

    def cert_for(self, server_name: str | None) -> tuple[str, CertKey]:
        """The (name, CertKey) for an SNI name: exact, then "*.rest" wildcard, else default."""
        if server_name:
            if server_name in self.certs:
                return server_name, self.certs[server_name]
            wildcard = "*." + server_name.partition(".")[2]
            if wildcard in self.certs:
                return wildcard, self.certs[wildcard]
        return "", self.certs[""]


class ClientSettings:
    """A client context: trust anchors, an optional client certificate, ALPN."""

    __slots__ = ("alpn", "ca", "cert", "handshake_timeout", "versions")

    def __init__(
        self,
        *,
        ca: bytes | None,
        cert: CertKey | None,
        alpn: tuple[str, ...],
        versions: tuple[int, ...],
        handshake_timeout: float,
    ) -> None:
        if handshake_timeout <= 0:
            raise TLSConfigError(f"handshake_timeout must be positive, got {handshake_timeout}")
        self.ca = ca
        self.cert = cert
        self.alpn = alpn
        self.versions = versions
        self.handshake_timeout = handshake_timeout
