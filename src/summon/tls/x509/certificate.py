"""An X.509 certificate's fields, read from DER: what path validation and logs need.

Grammar (RFC 5280 section 4.1, 4.2):

    Certificate    = SEQUENCE { tbsCertificate, signatureAlgorithm, signatureValue BIT STRING }
    TBSCertificate = SEQUENCE { [0] EXPLICIT version DEFAULT v1, serialNumber INTEGER,
                                signature AlgorithmIdentifier, issuer Name,
                                validity SEQUENCE { notBefore Time, notAfter Time },
                                subject Name, subjectPublicKeyInfo SEQUENCE,
                                [1] issuerUniqueID OPTIONAL, [2] subjectUniqueID OPTIONAL,
                                [3] EXPLICIT extensions SEQUENCE OF Extension OPTIONAL }
    Extension      = SEQUENCE { extnID OID, critical BOOLEAN DEFAULT FALSE, extnValue OCTETS }

Any departure raises BadCertificate(reason="malformed") naming what was wrong.
"""

from __future__ import annotations

from summon.tls.errors import MALFORMED, BadCertificate
from summon.tls.x509 import der

TYPE_CHECKING = False
if TYPE_CHECKING:
    from summon.tls.events import PeerCertificate

BASIC_CONSTRAINTS = "2.5.29.19"
KEY_USAGE = "2.5.29.15"
EXT_KEY_USAGE = "2.5.29.37"
SUBJECT_ALT_NAME = "2.5.29.17"
NAME_CONSTRAINTS = "2.5.29.30"
SUBJECT_KEY_ID = "2.5.29.14"
AUTHORITY_KEY_ID = "2.5.29.35"

SERVER_AUTH = "1.3.6.1.5.5.7.3.1"
CLIENT_AUTH = "1.3.6.1.5.5.7.3.2"

# keyUsage bits (RFC 5280 4.2.1.3), numbered from the first byte's top bit.
DIGITAL_SIGNATURE = 1 << 0
KEY_ENCIPHERMENT = 1 << 2
KEY_AGREEMENT = 1 << 4
KEY_CERT_SIGN = 1 << 5

_ATTRIBUTE_NAMES = {
    "2.5.4.3": "CN",
    "2.5.4.6": "C",
    "2.5.4.7": "L",
    "2.5.4.8": "ST",
    "2.5.4.10": "O",
    "2.5.4.11": "OU",
    "2.5.4.5": "serialNumber",
    "0.9.2342.19200300.100.1.25": "DC",
    "1.2.840.113549.1.9.1": "emailAddress",
}


class NameConstraints:
    """The dNSName and iPAddress subtrees of a CA's nameConstraints, and any other forms."""

    __slots__ = ("excluded_dns", "excluded_ip", "other_forms", "permitted_dns", "permitted_ip")

    def __init__(self) -> None:
        self.permitted_dns: list[str] = []
        self.excluded_dns: list[str] = []
        self.permitted_ip: list[tuple[bytes, bytes]] = []  # (address, mask)
        self.excluded_ip: list[tuple[bytes, bytes]] = []
        self.other_forms: list[int] = []  # GeneralName tags summon does not check


class Certificate:
    """One parsed certificate. `der` is the whole encoding, `tbs` the signed part."""

    def __init__(self, data: bytes) -> None:
        self.der = bytes(data)
        try:
            self._parse()
        except (der.DERError, IndexError, ValueError) as e:
            raise BadCertificate(f"{type(e).__name__}: {e}", reason=MALFORMED) from None

    def _parse(self) -> None:
        outer = der.parse_single(self.der, "Certificate").expect(der.SEQUENCE, "Certificate")
        parts = outer.children()
        if len(parts) != 3:
            raise der.DERError(f"Certificate has {len(parts)} parts, expected 3")
        tbs, outer_alg, signature = parts
        self.tbs = tbs.expect(der.SEQUENCE, "TBSCertificate").raw
        self.signature_algorithm, self.signature_params = _algorithm(outer_alg)
        self.signature, unused = der.bit_string(signature)
        if unused:
            raise der.DERError("signature BIT STRING has unused bits")
        fields = tbs.children()
        self.version = 1
        if fields and fields[0].tag == 0xA0:
            self.version = der.integer(der.parse_single(fields.pop(0).value, "version")) + 1
            if self.version not in (2, 3):
                raise der.DERError(f"version {self.version}")
        if len(fields) < 6:
            raise der.DERError(f"TBSCertificate has {len(fields)} fields, expected 6 or more")
        self.serial = der.integer(fields[0])
        if fields[1].raw != outer_alg.raw:
            raise der.DERError("the signature algorithm inside and outside the TBS differ")
        self.issuer = fields[2].expect(der.SEQUENCE, "issuer").raw
        validity = fields[3].expect(der.SEQUENCE, "validity").children()
        if len(validity) != 2:
            raise der.DERError("validity is not two times")
        self.not_before = der.time_value(validity[0])
        self.not_after = der.time_value(validity[1])
        self.subject = fields[4].expect(der.SEQUENCE, "subject").raw
        self.spki = fields[5].expect(der.SEQUENCE, "subjectPublicKeyInfo").raw
        self.key_algorithm, self.key_params = _algorithm(fields[5].children()[0])
        self.issuer_text = name_text(self.issuer)
        self.subject_text = name_text(self.subject)
        self.extensions: dict[str, tuple[bool, bytes]] = {}
        for extra in fields[6:]:
            if extra.tag == 0xA3:
                if self.version != 3:
                    raise der.DERError("extensions in a certificate below version 3")
                self._extensions(der.parse_single(extra.value, "extensions"))
            elif extra.tag not in (0x81, 0xA1, 0x82, 0xA2):
                raise der.DERError(f"unexpected TBSCertificate field tag 0x{extra.tag:02x}")
        self._decode_extensions()

    def _extensions(self, seq: der.Element) -> None:
        items = seq.expect(der.SEQUENCE, "Extensions").children()
        if not items:
            raise der.DERError("empty Extensions")
        for item in items:
            parts = item.expect(der.SEQUENCE, "Extension").children()
            if len(parts) not in (2, 3):
                raise der.DERError(f"Extension has {len(parts)} parts")
            oid = der.oid_string(parts[0].expect(der.OID, "extnID").value)
            critical = False
            if len(parts) == 3:
                critical = der.boolean(parts[1])
                if not critical:
                    raise der.DERError(f"extension {oid}: critical FALSE must be omitted in DER")
            value = parts[-1].expect(der.OCTET_STRING, "extnValue").value
            if oid in self.extensions:
                raise der.DERError(f"extension {oid} appears twice")
            self.extensions[oid] = (critical, value)

    def _decode_extensions(self) -> None:
        self.is_ca: bool | None = None  # None: no basicConstraints
        self.path_length: int | None = None
        self.key_usage: int | None = None
        self.ext_key_usage: tuple[str, ...] | None = None
        self.dns_names: tuple[str, ...] = ()
        self.ip_addresses: tuple[bytes, ...] = ()
        self.has_san = False
        self.name_constraints: NameConstraints | None = None
        self.subject_key_id: bytes | None = None
        self.authority_key_id: bytes | None = None
        ext = self.extensions
        if BASIC_CONSTRAINTS in ext:
            parts = der.parse_single(ext[BASIC_CONSTRAINTS][1], "basicConstraints")
            items = parts.expect(der.SEQUENCE, "basicConstraints").children()
            self.is_ca = False
            if items and items[0].tag == der.BOOLEAN:
                self.is_ca = der.boolean(items.pop(0))
            if items:
                self.path_length = der.integer(items.pop(0))
                if self.path_length < 0:
                    raise der.DERError(f"negative pathLenConstraint {self.path_length}")
            if items:
                raise der.DERError("basicConstraints has extra fields")
        if KEY_USAGE in ext:
            bits, _ = der.bit_string(der.parse_single(ext[KEY_USAGE][1], "keyUsage"))
            mask = 0
            for i in range(len(bits) * 8):
                if bits[i // 8] & (0x80 >> (i % 8)):
                    mask |= 1 << i
            self.key_usage = mask
        if EXT_KEY_USAGE in ext:
            seq = der.parse_single(ext[EXT_KEY_USAGE][1], "extKeyUsage")
            oids = seq.expect(der.SEQUENCE, "extKeyUsage").children()
            self.ext_key_usage = tuple(
                der.oid_string(o.expect(der.OID, "KeyPurposeId").value) for o in oids
            )
        if SUBJECT_ALT_NAME in ext:
            self.has_san = True
            seq = der.parse_single(ext[SUBJECT_ALT_NAME][1], "subjectAltName")
            dns, ips = [], []
            for name in seq.expect(der.SEQUENCE, "subjectAltName").children():
                if name.tag == 0x82:
                    dns.append(name.value.decode("ascii"))
                elif name.tag == 0x87:
                    if len(name.value) not in (4, 16):
                        raise der.DERError(f"iPAddress of {len(name.value)} bytes")
                    ips.append(name.value)
            self.dns_names, self.ip_addresses = tuple(dns), tuple(ips)
        if NAME_CONSTRAINTS in ext:
            self.name_constraints = _name_constraints(ext[NAME_CONSTRAINTS][1])
        if SUBJECT_KEY_ID in ext:
            ski = der.parse_single(ext[SUBJECT_KEY_ID][1], "subjectKeyIdentifier")
            self.subject_key_id = ski.expect(der.OCTET_STRING, "subjectKeyIdentifier").value
        if AUTHORITY_KEY_ID in ext:
            aki = der.parse_single(ext[AUTHORITY_KEY_ID][1], "authorityKeyIdentifier")
            for part in aki.expect(der.SEQUENCE, "authorityKeyIdentifier").children():
                if part.tag == 0x80:
                    self.authority_key_id = part.value

    @property
    def self_issued(self) -> bool:
        return self.issuer == self.subject

    def __repr__(self) -> str:
        return f"Certificate(subject={self.subject_text!r}, issuer={self.issuer_text!r})"


def _algorithm(element: der.Element) -> tuple[str, bytes]:
    parts = element.expect(der.SEQUENCE, "AlgorithmIdentifier").children()
    if not 1 <= len(parts) <= 2:
        raise der.DERError(f"AlgorithmIdentifier has {len(parts)} parts")
    oid = der.oid_string(parts[0].expect(der.OID, "algorithm").value)
    return oid, parts[1].raw if len(parts) == 2 else b""


def _name_constraints(value: bytes) -> NameConstraints:
    nc = NameConstraints()
    seq = der.parse_single(value, "nameConstraints").expect(der.SEQUENCE, "nameConstraints")
    for subtrees in seq.children():
        if subtrees.tag not in (0xA0, 0xA1):
            raise der.DERError(f"nameConstraints field tag 0x{subtrees.tag:02x}")
        permitted = subtrees.tag == 0xA0
        for subtree in subtrees.children():
            parts = subtree.expect(der.SEQUENCE, "GeneralSubtree").children()
            if not parts:
                raise der.DERError("empty GeneralSubtree")
            base = parts[0]
            if len(parts) > 1:
                # minimum and maximum MUST be absent/zero (RFC 5280 4.2.1.10): refuse others.
                nc.other_forms.append(-1)
            if base.tag == 0x82:
                (nc.permitted_dns if permitted else nc.excluded_dns).append(
                    base.value.decode("ascii").lower()
                )
            elif base.tag == 0x87:
                if len(base.value) not in (8, 32):
                    raise der.DERError(f"iPAddress constraint of {len(base.value)} bytes")
                half = len(base.value) // 2
                pair = (base.value[:half], base.value[half:])
                (nc.permitted_ip if permitted else nc.excluded_ip).append(pair)
            else:
                nc.other_forms.append(base.tag)
    return nc


def name_text(name_der: bytes) -> str:
    """A Name as an RFC 4514 string: most specific RDN first ("CN=x,O=y,C=z")."""
    rdns = der.parse_single(name_der, "Name").expect(der.SEQUENCE, "Name").children()
    out = []
    for rdn in reversed(rdns):
        parts = []
        for atv in rdn.expect(der.SET, "RelativeDistinguishedName").children():
            oid_el, value = atv.expect(der.SEQUENCE, "AttributeTypeAndValue").children()
            oid = der.oid_string(oid_el.expect(der.OID, "AttributeType").value)
            key = _ATTRIBUTE_NAMES.get(oid, oid)
            if value.tag in (der.UTF8_STRING, der.PRINTABLE_STRING, der.IA5_STRING, 0x14):
                text = value.value.decode("utf-8", "replace")
            elif value.tag == 0x1E:  # BMPString
                text = value.value.decode("utf-16-be", "replace")
            else:
                text = "#" + value.raw.hex()
            parts.append(f"{key}={_escape(text)}")
        out.append("+".join(parts))
    return ",".join(out)


def _escape(text: str) -> str:
    out = "".join("\\" + c if c in ',+"\\<>;=' else c for c in text)
    if out.startswith((" ", "#")):
        out = "\\" + out
    if out.endswith(" "):
        out = out[:-1] + "\\ "
    return out


def pem_certificates(text: bytes, what: str) -> list[bytes]:
    """Every "CERTIFICATE" block of a PEM file, as DER; raise BadCertificate if none."""
    from summon.tls.pem import pem_blocks

    ders = [body for label, body in pem_blocks(text, what) if label == "CERTIFICATE"]
    if not ders:
        raise BadCertificate(f"{what} holds no PEM CERTIFICATE block", reason=MALFORMED)
    return ders


def peer_certificate(data: bytes) -> PeerCertificate:
    """The summary of a certificate that HandshakeComplete reports."""
    import hashlib

    from summon.tls.events import PeerCertificate
    from summon.tls.x509.names import ip_text

    cert = Certificate(data)
    return PeerCertificate(
        subject=cert.subject_text,
        issuer=cert.issuer_text,
        serial=f"{cert.serial:x}",
        not_before=cert.not_before,
        not_after=cert.not_after,
        dns_names=cert.dns_names,
        ip_addresses=tuple(ip_text(ip) for ip in cert.ip_addresses),
        sha256=hashlib.sha256(cert.der).hexdigest(),
        der=cert.der,
    )
