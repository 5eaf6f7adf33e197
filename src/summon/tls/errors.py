"""The typed errors of summon.tls: every failure a peer or a configuration can cause.

Each error's message names the broken condition and the value seen, and its `reason` is a short
fixed phrase (the constants below) that code and tests compare against, so logs can count
failures by kind ("expired": 3, "unknown CA": 12) without parsing messages.
"""

from __future__ import annotations

# BadCertificate reasons: why a certificate (chain) was refused.
EXPIRED = "expired"
NOT_YET_VALID = "not yet valid"
UNKNOWN_CA = "unknown CA"
SELF_SIGNED = "self-signed"
HOSTNAME_MISMATCH = "hostname mismatch"
BAD_SIGNATURE = "bad signature"
PATH_TOO_LONG = "path too long"
NOT_A_CA = "not a CA"
KEY_USAGE = "key usage"
WRONG_PURPOSE = "wrong purpose"
NAME_CONSTRAINTS = "name constraints"
UNSUPPORTED_CRITICAL_EXTENSION = "unsupported critical extension"
MALFORMED = "malformed"
NO_CERTIFICATE = "no certificate"

# ProtocolViolation reasons: the peer broke the record or handshake protocol.
BAD_RECORD = "bad record"
OVERSIZED_RECORD = "oversized record"
TRUNCATED_RECORD = "truncated record"
UNEXPECTED_MESSAGE = "unexpected message"
RENEGOTIATION_REFUSED = "renegotiation attempt refused"
BAD_RECORD_MAC = "bad record mac"
DECODE_ERROR = "decode error"
# HandshakeFailure reason: the client offered ALPN protocols, none of them the server's.
NO_APPLICATION_PROTOCOL = "no application protocol"

CERTIFICATE_REASONS = (
    EXPIRED,
    NOT_YET_VALID,
    UNKNOWN_CA,
    SELF_SIGNED,
    HOSTNAME_MISMATCH,
    BAD_SIGNATURE,
    PATH_TOO_LONG,
    NOT_A_CA,
    KEY_USAGE,
    WRONG_PURPOSE,
    NAME_CONSTRAINTS,
    UNSUPPORTED_CRITICAL_EXTENSION,
    MALFORMED,
    NO_CERTIFICATE,
)
PROTOCOL_REASONS = (
    BAD_RECORD,
    OVERSIZED_RECORD,
    TRUNCATED_RECORD,
    UNEXPECTED_MESSAGE,
    RENEGOTIATION_REFUSED,
    BAD_RECORD_MAC,
    DECODE_ERROR,
)


class TLSError(Exception):
    """Base of every summon.tls error. `reason` is a short fixed phrase; str() is the detail."""

    reason = "tls error"

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        if reason is not None:
            self.reason = reason
        super().__init__(message)


class TLSConfigError(TLSError, ValueError):
    """The configuration cannot work: a missing secret, a key that is not PEM, a key that does
    not match its certificate, an unknown backend or version. Raised when a context is made,
    never in the middle of a connection."""

    reason = "bad configuration"


class HandshakeFailure(TLSError):
    """The handshake did not complete: no common version or cipher, the peer sent a fatal
    alert, the peer hung up. Subclasses say more."""

    reason = "handshake failure"


class ProtocolVersionRefused(HandshakeFailure):
    """The peer offered (or the server chose) a version below TLS 1.2, or one this context
    excludes. `version` is what the peer offered, e.g. "TLS 1.0"."""

    reason = "protocol version refused"

    def __init__(self, message: str, *, version: str) -> None:
        self.version = version
        super().__init__(message)


class BadCertificate(HandshakeFailure):
    """The peer's certificate chain was refused; `reason` is one of CERTIFICATE_REASONS."""

    reason = "bad certificate"

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(f"certificate refused ({reason}): {message}", reason=reason)


class HandshakeTimeout(HandshakeFailure, TimeoutError):
    """The handshake took longer than the context's handshake_timeout (a slowloris peer)."""

    reason = "handshake timeout"

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        super().__init__(f"handshake not complete after {seconds:g} s")


class ProtocolViolation(TLSError):
    """The peer broke the protocol: a record that does not parse, a record over the size limit,
    a message out of place, a renegotiation. `reason` is one of PROTOCOL_REASONS."""

    reason = "protocol violation"

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(f"{reason}: {message}", reason=reason)


class TLSClosed(TLSError):
    """The session is closed (or failed): nothing more can be sent on it."""

    reason = "closed"
