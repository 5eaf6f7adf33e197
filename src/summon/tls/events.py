"""What a TLS session reports to its user: the events its receive_data returns.

Plain classes with __slots__ (no dataclasses: importing them costs ~30 ms in an image).
"""

from __future__ import annotations


class PeerCertificate:
    """A summary of the peer's leaf certificate, for logs and access decisions.

    subject and issuer are RFC 4514 strings ("CN=app.example,O=Example"); dns_names and
    ip_addresses come from subjectAltName; not_before/not_after are seconds since the epoch;
    serial is the serial number in hex; sha256 the fingerprint of the DER in hex; der the
    certificate itself.
    """

    __slots__ = (
        "der",
        "dns_names",
        "ip_addresses",
        "issuer",
        "not_after",
        "not_before",
        "serial",
        "sha256",
        "subject",
    )

    def __init__(
        self,
        *,
        subject: str,
        issuer: str,
        serial: str,
        not_before: float,
        not_after: float,
        dns_names: tuple[str, ...],
        ip_addresses: tuple[str, ...],
        sha256: str,
        der: bytes,
    ) -> None:
        self.subject = subject
        self.issuer = issuer
        self.serial = serial
        self.not_before = not_before
        self.not_after = not_after
        self.dns_names = dns_names
        self.ip_addresses = ip_addresses
        self.sha256 = sha256
        self.der = der

    def __repr__(self) -> str:
        return f"PeerCertificate(subject={self.subject!r}, issuer={self.issuer!r})"


class HandshakeComplete:
    """The handshake is done and the peer passed every check.

    version: "TLSv1.2" or "TLSv1.3"; cipher: the suite's IANA name; alpn: the protocol both
    sides chose, or None; server_name: the SNI name (sent by a client, received by a server),
    or None; peer_certificate: the peer's leaf, or None when the peer sent none (a client with
    client_auth="optional" or "none").
    """

    __slots__ = ("alpn", "cipher", "peer_certificate", "server_name", "version")

    def __init__(
        self,
        *,
        version: str,
        cipher: str,
        alpn: str | None,
        server_name: str | None,
        peer_certificate: PeerCertificate | None,
    ) -> None:
        self.version = version
        self.cipher = cipher
        self.alpn = alpn
        self.server_name = server_name
        self.peer_certificate = peer_certificate

    def __repr__(self) -> str:
        return (
            f"HandshakeComplete(version={self.version!r}, cipher={self.cipher!r}, "
            f"alpn={self.alpn!r}, server_name={self.server_name!r}, "
            f"peer_certificate={self.peer_certificate!r})"
        )


class ApplicationData:
    """Decrypted bytes from the peer, in order."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __repr__(self) -> str:
        return f"ApplicationData({len(self.data)} bytes)"


class CloseNotify:
    """The peer ended the stream cleanly with close_notify; our reply is in data_to_send()."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "CloseNotify()"


class TruncatedClose:
    """The transport ended at a record boundary without close_notify.

    The data so far is authentic, but an attacker who can cut the connection could have cut
    it here: protocols with their own framing (HTTP Content-Length) may not care, others do.
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return "TruncatedClose()"


# Not a typing alias: this module is imported at run time in images.
TYPE_CHECKING = False
if TYPE_CHECKING:
    Event = HandshakeComplete | ApplicationData | CloseNotify | TruncatedClose
