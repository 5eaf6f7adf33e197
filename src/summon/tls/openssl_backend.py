"""The "openssl" backend: the stdlib ssl module driven through MemoryBIO and SSLObject.

OpenSSL runs the handshake, the record protection and, for certificates, its own path
validation and hostname check (X509_verify_cert, X509_check_host); summon maps its errors to
the typed ones. Imports: ssl (hence _ssl, libssl, libcrypto), os; and summon.tls's
stdlib-only modules.
"""

from __future__ import annotations

import errno
import os
import ssl

from summon.tls import errors as e
from summon.tls.events import HandshakeComplete
from summon.tls.session import TLS12, TLS13, Engine
from summon.tls.x509.certificate import peer_certificate
from summon.tls.x509.names import ip_bytes

TYPE_CHECKING = False
if TYPE_CHECKING:
    from summon.tls.hello import ClientHello
    from summon.tls.settings import CertKey, ClientSettings, ServerSettings

_TLS_VERSIONS = {0x0303: ssl.TLSVersion.TLSv1_2, 0x0304: ssl.TLSVersion.TLSv1_3}

# X509_V_ERR_* codes (OpenSSL 3.0's openssl/x509_vfy.h) -> BadCertificate reasons.
_VERIFY_REASONS = {
    2: e.UNKNOWN_CA,  # unable to get issuer certificate
    4: e.BAD_SIGNATURE,  # unable to decrypt certificate's signature
    6: e.MALFORMED,  # unable to decode issuer public key
    7: e.BAD_SIGNATURE,  # certificate signature failure
    9: e.NOT_YET_VALID,
    10: e.EXPIRED,
    13: e.MALFORMED,  # format error in notBefore
    14: e.MALFORMED,  # format error in notAfter
    18: e.SELF_SIGNED,  # depth zero self-signed certificate
    19: e.UNKNOWN_CA,  # self-signed certificate in chain (a root we do not trust)
    20: e.UNKNOWN_CA,  # unable to get local issuer certificate
    21: e.UNKNOWN_CA,  # unable to verify the first certificate
    22: e.PATH_TOO_LONG,  # certificate chain too long
    24: e.MALFORMED,  # no issuer public key
    25: e.PATH_TOO_LONG,  # path length constraint exceeded
    26: e.WRONG_PURPOSE,  # unsuitable certificate purpose
    27: e.UNKNOWN_CA,  # certificate not trusted
    28: e.UNKNOWN_CA,  # certificate rejected
    29: e.UNKNOWN_CA,  # subject issuer mismatch
    30: e.UNKNOWN_CA,  # authority and subject key identifier mismatch
    32: e.KEY_USAGE,  # key usage does not include certificate signing
    34: e.UNSUPPORTED_CRITICAL_EXTENSION,
    37: e.WRONG_PURPOSE,  # invalid non-CA certificate (has CA markings)
    39: e.KEY_USAGE,  # key usage does not include digital signature
    41: e.MALFORMED,  # invalid or inconsistent certificate extension
    47: e.NAME_CONSTRAINTS,  # permitted subtree violation
    48: e.NAME_CONSTRAINTS,  # excluded subtree violation
    49: e.UNSUPPORTED_CRITICAL_EXTENSION,  # name constraints minimum or maximum unsupported
    51: e.UNSUPPORTED_CRITICAL_EXTENSION,  # unsupported name constraint type
    52: e.NAME_CONSTRAINTS,  # unsupported or invalid name constraint syntax
    53: e.NAME_CONSTRAINTS,  # unsupported or invalid name syntax
    55: e.UNKNOWN_CA,  # path loop
    62: e.HOSTNAME_MISMATCH,
    64: e.HOSTNAME_MISMATCH,  # IP address mismatch
    66: e.BAD_SIGNATURE,  # EE key too small
    67: e.BAD_SIGNATURE,  # CA key too small
    68: e.BAD_SIGNATURE,  # CA signature digest algorithm too weak
    76: e.BAD_SIGNATURE,  # unsupported signature algorithm
    77: e.BAD_SIGNATURE,  # signature algorithm mismatch
    78: e.BAD_SIGNATURE,  # signature algorithm inconsistency
    79: e.NOT_A_CA,  # invalid CA certificate
    80: e.NOT_A_CA,  # pathlen constraint on a non-CA
    81: e.NOT_A_CA,  # pathlen without keyCertSign
    82: e.NOT_A_CA,  # keyCertSign on a non-CA
    92: e.KEY_USAGE,  # CA certificate without keyUsage
    93: e.MALFORMED,  # extensions require version 3
}

# Words in OpenSSL's reason codes (SSLError.reason) -> what summon raises.
_PROTOCOL_WORDS = (
    ("RENEGOTIATION", e.RENEGOTIATION_REFUSED),
    ("BAD_RECORD_MAC", e.BAD_RECORD_MAC),
    ("DECRYPTION_FAILED", e.BAD_RECORD_MAC),
    ("RECORD_OVERFLOW", e.OVERSIZED_RECORD),
    ("TOO_LONG", e.OVERSIZED_RECORD),
    ("UNEXPECTED_MESSAGE", e.UNEXPECTED_MESSAGE),
    ("UNEXPECTED_RECORD", e.UNEXPECTED_MESSAGE),
    ("CCS_RECEIVED_EARLY", e.UNEXPECTED_MESSAGE),
    ("WRONG_VERSION_NUMBER", e.BAD_RECORD),
    ("HTTP_REQUEST", e.BAD_RECORD),
    ("LENGTH_MISMATCH", e.DECODE_ERROR),
    ("BAD_PACKET_LENGTH", e.DECODE_ERROR),
    ("DECODE_ERROR", e.DECODE_ERROR),
    ("BAD_EXTENSION", e.DECODE_ERROR),
    ("LENGTH_TOO_SHORT", e.DECODE_ERROR),
)
_VERSION_WORDS = (
    "UNSUPPORTED_PROTOCOL",
    "PROTOCOL_VERSION",
    "NO_PROTOCOLS_AVAILABLE",
    "WRONG_SSL_VERSION",
    "VERSION_TOO_LOW",
)


def _reason_name(exc: ssl.SSLError) -> str:
    """OpenSSL's reason code, e.g. "TLSV1_ALERT_NO_APPLICATION_PROTOCOL". The ssl module's
    table lacks some (exc.reason None): then it is read from the message, "[SSL] tlsv1 alert
    no application protocol (_ssl.c:1006)"."""
    if exc.reason:
        return str(exc.reason)
    text = str(exc.args[1] if len(exc.args) > 1 else exc)
    text = text.partition("] ")[2] or text
    text = text.rpartition(" (_ssl.c")[0] or text
    return text.strip().upper().replace(" ", "_") or exc.__class__.__name__


def _error(exc: ssl.SSLError, handshaking: bool) -> e.TLSError:
    """The typed error for an SSLError OpenSSL raised."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        code = exc.verify_code
        reason = _VERIFY_REASONS.get(code, e.UNKNOWN_CA if code else e.MALFORMED)
        return e.BadCertificate(f"{exc.verify_message} (OpenSSL code {code})", reason=reason)
    name = _reason_name(exc)
    if name == "PEER_DID_NOT_RETURN_A_CERTIFICATE":
        return e.BadCertificate("the client sent no certificate", reason=e.NO_CERTIFICATE)
    if any(w in name for w in _VERSION_WORDS):
        return e.ProtocolVersionRefused(f"no common TLS version ({name})", version="below TLS 1.2")
    if "_ALERT_" in name:  # SSLV3_ALERT_..., TLSV1_ALERT_...: the peer's alert, not
        # OpenSSL's own refusal of alerts (TOO_MANY_WARN_ALERTS, INVALID_ALERT)
        alert = name.split("ALERT_", 1)[-1].lower()
        message = f"the peer sent fatal alert {alert}"
        return (
            e.HandshakeFailure(message) if handshaking else e.TLSError(message, reason="peer alert")
        )
    for word, reason in _PROTOCOL_WORDS:
        if word in name:
            return e.ProtocolViolation(f"OpenSSL: {name}", reason=reason)
    if handshaking:
        return e.HandshakeFailure(f"OpenSSL: {name}")
    return e.ProtocolViolation(f"OpenSSL: {name}", reason=e.BAD_RECORD)


def _base_context(purpose: int, versions: tuple[int, ...], alpn: tuple[str, ...]) -> ssl.SSLContext:
    ctx = ssl.SSLContext(purpose)
    ctx.minimum_version = _TLS_VERSIONS[min(versions)]
    ctx.maximum_version = _TLS_VERSIONS[max(versions)]
    # Session tickets off (TLS 1.2 and 1.3), no compression, no renegotiation: a TLS 1.2
    # ClientHello (or HelloRequest) after the handshake gets a warning no_renegotiation.
    ctx.options |= ssl.OP_NO_TICKET | ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    return ctx


def _key_file() -> tuple[int, str, str]:
    """(fd, path to load, path to remove) of a private file for the key, in memory.

    A memfd where the kernel allows it; inside summon's sandbox (whose seccomp filter has no
    memfd_create) a 0600 file on /tmp, a tmpfs there, removed as soon as OpenSSL read it. The
    sandbox is recognised (a seccomp filter, /tmp a tmpfs) rather than tried: each refused
    memfd_create put "refused memfd_create ... add syscalls = [...]" on the console of every
    run, and the build told the user to allow a call the image does not need.
    """
    if not _filtered_with_tmpfs():
        try:
            fd = os.memfd_create("summon-tls", os.MFD_CLOEXEC)
            return fd, f"/proc/self/fd/{fd}", ""
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.ENOSYS):
                raise
    path = f"/tmp/.summon-tls-{os.getpid()}-{os.urandom(6).hex()}"
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    return fd, path, path


def _filtered_with_tmpfs() -> bool:
    """Whether this process runs under a seccomp filter with /tmp on a tmpfs (the sandbox)."""
    try:
        with open("/proc/self/status", "rb") as f:
            if b"\nSeccomp:\t2\n" not in f.read():
                return False
        with open("/proc/self/mountinfo", "rb") as f:
            mounts = f.read().splitlines()
    except OSError:
        return False
    fstype = b""
    for line in mounts:  # the last mount on /tmp is the one seen
        fields, _, rest = line.partition(b" - ")
        parts = fields.split()
        if len(parts) > 4 and parts[4] == b"/tmp":
            fstype = rest.split(b" ", 1)[0]
    return fstype == b"tmpfs"


def _no_passphrase() -> bytes:
    raise e.TLSConfigError("the private key is encrypted with a passphrase: give it decrypted")


def _load_cert_chain(ctx: ssl.SSLContext, pair: CertKey) -> None:
    """load_cert_chain reads only files: hand it a memory file, never the disk."""
    fd, path, remove = _key_file()
    try:
        data = pair.chain.rstrip(b"\n") + b"\n" + pair.key
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        ctx.load_cert_chain(path, password=_no_passphrase)  # never a terminal prompt
    except FileNotFoundError:
        raise e.TLSConfigError(
            "the openssl backend loads keys through /proc/self/fd, and /proc is not mounted"
        ) from None
    except ssl.SSLError as exc:
        if exc.reason == "KEY_VALUES_MISMATCH":
            raise e.TLSConfigError(
                f"{pair.source}: the private key does not match the certificate"
            ) from None
        raise e.TLSConfigError(
            f"{pair.source}: OpenSSL cannot use this certificate and key ({exc.reason})"
        ) from None
    finally:
        os.close(fd)
        if remove:
            os.unlink(remove)


def _load_anchors(ctx: ssl.SSLContext, pem: bytes, what: str) -> None:
    try:
        ctx.load_verify_locations(cadata=pem.decode("ascii"))
    except (ssl.SSLError, UnicodeDecodeError, ValueError) as exc:
        raise e.TLSConfigError(f"{what}: not PEM CA certificates ({exc})") from None


class OpenSSLEngine(Engine):
    """One connection through an SSLObject over two MemoryBIOs."""

    def __init__(
        self,
        ctx: ssl.SSLContext,
        *,
        server_side: bool,
        server_hostname: str | None,
        sni: str | None,
    ) -> None:
        self._in = ssl.MemoryBIO()
        self._out = ssl.MemoryBIO()
        self._obj = ctx.wrap_bio(
            self._in, self._out, server_side=server_side, server_hostname=server_hostname
        )
        self._sni = sni
        self._done = False

    def start(self) -> None:
        self.handshake()

    def feed(self, record: bytes) -> None:
        self._in.write(record)

    def handshake(self) -> bool:
        try:
            self._obj.do_handshake()
        except ssl.SSLWantReadError:
            return False
        except ssl.SSLError as exc:
            raise _error(exc, handshaking=True) from None
        self._done = True
        return True

    def read(self) -> tuple[bytes, bool]:
        chunks = []
        closed = False
        while True:
            try:
                data = self._obj.read(1 << 16)
            except ssl.SSLWantReadError:
                break
            except ssl.SSLZeroReturnError:
                closed = True
                break
            except ssl.SSLError as exc:
                raise _error(exc, handshaking=False) from None
            if not data:
                closed = True
                break
            chunks.append(data)
        if closed:
            self.close()
        return b"".join(chunks), closed

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        try:
            while view:
                view = view[self._obj.write(view) :]
        except ssl.SSLError as exc:
            raise _error(exc, handshaking=False) from None

    def close(self) -> None:
        try:
            self._obj.unwrap()
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            pass  # close_notify is queued; the peer's reply is not awaited
        except ssl.SSLError as exc:
            raise _error(exc, handshaking=False) from None

    def refuse(self, record: bytes, alert: int) -> None:
        # The ssl module cannot send an alert of our choosing: OpenSSL reads the record and
        # refuses it with its own (unexpected_message for a record type TLS 1.3 forbids; in
        # TLS 1.2 the alert for a record that does not decrypt).
        self._in.write(record)
        try:
            self._obj.read(1)
        except ssl.SSLError:
            pass

    def outgoing(self) -> bytes:
        return self._out.read()

    def version(self) -> int:
        return TLS13 if self._obj.version() == "TLSv1.3" else TLS12

    def complete(self) -> HandshakeComplete:
        der = self._obj.getpeercert(binary_form=True)
        cipher = self._obj.cipher()
        return HandshakeComplete(
            version=self._obj.version() or "",
            cipher=cipher[0] if cipher else "",
            alpn=self._obj.selected_alpn_protocol(),
            server_name=self._sni,
            peer_certificate=peer_certificate(der) if der else None,
        )


# TLS 1.2 sessions a server context keeps for resumption by session ID. OpenSSL's server
# cache is on, and the ssl module has no call to turn it off or size it: its default is
# 20,480 sessions of about 1.2 KB each (held 300 s), so a client making full handshakes
# could make a server hold ~24 MB, a third of a 64M app (8,000 handshakes grew one by 9.5 MB,
# 2.5 MB with this bound). Past this many, the context is made anew (its sessions go with
# the old one once its connections end).
MAX_CACHED_SESSIONS = 1000


class ServerBackend:
    """SSLContexts for a server: one per certificate, so SNI picks the context."""

    def __init__(self, settings: ServerSettings) -> None:
        self.settings = settings
        self._contexts = {name: self._context(pair) for name, pair in settings.certs.items()}

    def _context(self, pair: CertKey) -> ssl.SSLContext:
        settings = self.settings
        ctx = _base_context(ssl.PROTOCOL_TLS_SERVER, settings.versions, settings.alpn)
        ctx.num_tickets = 0
        _load_cert_chain(ctx, pair)
        if settings.client_auth != "none":
            assert settings.client_ca is not None
            _load_anchors(ctx, settings.client_ca, "client_ca")
            ctx.verify_mode = (
                ssl.CERT_REQUIRED if settings.client_auth == "required" else ssl.CERT_OPTIONAL
            )
        return ctx

    def engine(self, hello: ClientHello) -> Engine:
        name, _ = self.settings.cert_for(hello.server_name)
        if self._contexts[name].session_stats()["number"] >= MAX_CACHED_SESSIONS:
            self._contexts[name] = self._context(self.settings.certs[name])
        return OpenSSLEngine(
            self._contexts[name], server_side=True, server_hostname=None, sni=hello.server_name
        )


class ClientBackend:
    """One SSLContext for a client: its trust anchors (or the system's), its own certificate."""

    def __init__(self, settings: ClientSettings) -> None:
        self.settings = settings
        ctx = _base_context(ssl.PROTOCOL_TLS_CLIENT, settings.versions, settings.alpn)
        # RFC 6125 / 9525: the subject CN is never a hostname.
        ctx.hostname_checks_common_name = False
        if settings.ca is not None:
            _load_anchors(ctx, settings.ca, "ca")
        else:
            ctx.load_default_certs()
        if settings.cert is not None:
            _load_cert_chain(ctx, settings.cert)
        self._ctx = ctx

    def engine(self, server_hostname: str) -> Engine:
        sni = None if ip_bytes(server_hostname) is not None else server_hostname
        return OpenSSLEngine(self._ctx, server_side=False, server_hostname=server_hostname, sni=sni)
