"""Names in certificates: RFC 6125 hostname matching and RFC 5280 name constraints.

Hostname rules (RFC 6125 section 6.4, as RFC 9525 tightened them):
- a hostname that is an IP address literal matches only iPAddress SANs, byte for byte;
- any other hostname matches only dNSName SANs; the subject's CN is never consulted;
- comparison ignores case and one trailing dot;
- a wildcard is the whole left-most label ("*.example.com"), matches exactly one label, and
  needs at least two labels after it ("*.com" matches nothing); partial wildcards
  ("f*.example.com", "*oo.example.com") and wildcards in other labels match nothing.
"""

from __future__ import annotations

from summon.tls.errors import HOSTNAME_MISMATCH, NAME_CONSTRAINTS, BadCertificate

TYPE_CHECKING = False
if TYPE_CHECKING:
    from summon.tls.x509.certificate import Certificate, NameConstraints


def ip_bytes(text: str) -> bytes | None:
    """The packed address if `text` is an IPv4 or IPv6 literal, else None."""
    import ipaddress  # loaded only where a name must be checked (~2 ms)

    try:
        return ipaddress.ip_address(text.strip("[]")).packed
    except ValueError:
        return None


def ip_text(packed: bytes) -> str:
    import ipaddress

    return str(ipaddress.ip_address(packed))


def dns_name_matches(pattern: str, hostname: str) -> bool:
    """Whether a dNSName `pattern` from a certificate covers `hostname` (RFC 6125 6.4.3)."""
    pattern = pattern.lower().rstrip(".")
    hostname = hostname.lower().rstrip(".")
    if not pattern or not hostname:
        return False
    if "*" not in pattern:
        return pattern == hostname
    first, _, rest = pattern.partition(".")
    if first != "*" or "*" in rest or rest.count(".") < 1:
        return False
    host_first, _, host_rest = hostname.partition(".")
    return bool(host_first) and host_rest == rest


def check_hostname(cert: Certificate, hostname: str) -> None:
    """Raise BadCertificate(hostname mismatch) unless `cert` names `hostname`."""
    packed = ip_bytes(hostname)
    if packed is not None:
        if packed in cert.ip_addresses:
            return
        listed = ", ".join(ip_text(ip) for ip in cert.ip_addresses) or "none"
        raise BadCertificate(
            f"IP address {hostname} is not among the certificate's IP SANs ({listed})",
            reason=HOSTNAME_MISMATCH,
        )
    if any(dns_name_matches(p, hostname) for p in cert.dns_names):
        return
    listed = ", ".join(cert.dns_names) or "none"
    raise BadCertificate(
        f"{hostname!r} is not among the certificate's DNS SANs ({listed})",
        reason=HOSTNAME_MISMATCH,
    )


def _within_dns(name: str, base: str) -> bool:
    """RFC 5280 4.2.1.10: `name` is `base` or ends with "." + base (a leading dot: subdomains)."""
    name = name.lower().rstrip(".")
    base = base.lower().rstrip(".")
    if not base:
        return True
    if base.startswith("."):
        return name.endswith(base)
    return name == base or name.endswith("." + base)


def _within_ip(addr: bytes, subnet: tuple[bytes, bytes]) -> bool:
    base, mask = subnet
    if len(addr) != len(base):
        return False
    return all((a & m) == (b & m) for a, b, m in zip(addr, base, mask, strict=True))


def check_name_constraints(constraints: NameConstraints, cert: Certificate, ca: str) -> None:
    """Raise BadCertificate(name constraints) if `cert`'s SAN names break `constraints`."""
    for name in cert.dns_names:
        if constraints.permitted_dns and not any(
            _within_dns(name, b) for b in constraints.permitted_dns
        ):
            raise BadCertificate(
                f"DNS name {name!r} of {cert.subject_text!r} is outside the subtrees "
                f"{constraints.permitted_dns} permitted by {ca!r}",
                reason=NAME_CONSTRAINTS,
            )
        for base in constraints.excluded_dns:
            if _within_dns(name, base):
                raise BadCertificate(
                    f"DNS name {name!r} of {cert.subject_text!r} is in subtree {base!r} "
                    f"excluded by {ca!r}",
                    reason=NAME_CONSTRAINTS,
                )
    for addr in cert.ip_addresses:
        if constraints.permitted_ip and not any(
            _within_ip(addr, s) for s in constraints.permitted_ip
        ):
            raise BadCertificate(
                f"IP address {ip_text(addr)} of {cert.subject_text!r} is outside the subnets "
                f"permitted by {ca!r}",
                reason=NAME_CONSTRAINTS,
            )
        for subnet in constraints.excluded_ip:
            if _within_ip(addr, subnet):
                raise BadCertificate(
                    f"IP address {ip_text(addr)} of {cert.subject_text!r} is in a subnet "
                    f"excluded by {ca!r}",
                    reason=NAME_CONSTRAINTS,
                )
