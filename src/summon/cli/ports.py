"""`summon run -p`: the forms a user writes (docker's, port ranges included), and whether the
host ports can be listened on, said before anything starts (a module of its own: `run` and
`start` use it, and neither imports the other)."""

from __future__ import annotations

import re
import socket

from summon.errors import UserError
from summon.targets.base import PortForward, PortTaken

# PORT or FIRST-LAST, each side; docker's forms: -p 8080, -p 8080:80, -p ADDR:8080:80, with
# /udp, and -p 21000-21010:21000-21010 (a range on both sides, of one length).
_PORTS = r"\d+(?:-\d+)?"
_PORT_RE = re.compile(
    rf"^(?:(?:(?P<addr>\[[^]]*\]|[^:\[\]]+):)?(?P<host>{_PORTS}):)?(?P<guest>{_PORTS})"
    r"(?:/(?P<proto>tcp|udp))?\Z",
    re.ASCII,  # \d: 0-9 only, not every script's digits (int() reads those too)
)
_OCTET = r"(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_IPV4_RE = re.compile(rf"^{_OCTET}(\.{_OCTET}){{3}}\Z", re.ASCII)
# Each forward is a listener on the host and one in the forwarder: a typo such as
# 1-65535 would open every port.
MAX_FORWARDS = 1024


def parse_ports(values: tuple[str, ...]) -> tuple[PortForward, ...]:
    """The forwards the -p flags ask for, in order; UserError in one line for a bad one."""
    forwards: list[PortForward] = []
    for v in values:
        m = _PORT_RE.match(v)
        if not m:
            raise UserError(
                f"-p {v}: expected PORT, HOST:GUEST, ADDR:HOST:GUEST or any of them with /udp, "
                "each port a number or a range FIRST-LAST"
            )
        addr = m["addr"]
        if addr is not None and not _IPV4_RE.match(addr):
            # Not left to bind(): inet_aton reads "1.2.3" as 1.2.0.3, and a name or an IPv6
            # address would fail there with a message about something else.
            raise UserError(
                f"-p {v}: {addr} is not an IPv4 address in dotted form; ADDR is where "
                "summon listens on this host: 127.0.0.1 (the default), 0.0.0.0 (every "
                "address) or one of this host's (IPv6 and host names are not supported)"
            )
        if addr is not None and int(addr.split(".")[0]) >= 224:
            # 224/4 multicast, 240/4 reserved and broadcast: bind() took 255.255.255.255,
            # and the instance "served" where no client can connect.
            raise UserError(
                f"-p {v}: {addr} is a multicast, reserved or broadcast address; give "
                "127.0.0.1, 0.0.0.0 or one of this host's addresses"
            )
        guest = _range(v, m["guest"])
        host = _range(v, m["host"]) if m["host"] else guest  # -p 8080: the same on the host
        if len(host) != len(guest):
            raise UserError(
                f"-p {v}: the host ports ({len(host)}) and the guest ports ({len(guest)}) "
                "differ in number; give ranges of one length, such as 8000-8003:9000-9003"
            )
        if len(forwards) + len(host) > MAX_FORWARDS:
            raise UserError(f"-p {v}: at most {MAX_FORWARDS} ports can be published in all")
        for h, g in zip(host, guest, strict=True):
            fwd = PortForward(h, g, m["proto"] or "tcp", addr or "127.0.0.1")
            for other in forwards:
                if _overlap(fwd, other):
                    raise UserError(
                        f"-p {v}: {fwd.host_addr}:{h}/{fwd.protocol} is given twice "
                        f"(also by {other}); each host port takes one forward"
                    )
            forwards.append(fwd)
    return tuple(forwards)


def _range(flag: str, text: str) -> range:
    """The ports of PORT or FIRST-LAST."""
    first, _, last = text.partition("-")
    ports = range(int(first), int(last or first) + 1)
    if not (1 <= int(first) <= 65535 and 1 <= int(last or first) <= 65535):
        raise UserError(f"-p {flag}: ports are numbers from 1 to 65535")
    if not ports:
        raise UserError(f"-p {flag}: the range {text} ends before it begins; write it FIRST-LAST")
    return ports


def _overlap(a: PortForward, b: PortForward) -> bool:
    """Whether a and b listen on one host port: same port and protocol, and the same
    address or either one every address (0.0.0.0)."""
    wild = "0.0.0.0"
    return (a.host_port, a.protocol) == (b.host_port, b.protocol) and (
        a.host_addr == b.host_addr or wild in (a.host_addr, b.host_addr)
    )


def check_ports_free(ports: tuple[PortForward, ...]) -> None:
    """A port already taken, or an address not on this host, is the user's to fix: say so
    here, in one line, not later from inside a forwarder."""
    for f in ports:
        kind = socket.SOCK_DGRAM if f.protocol == "udp" else socket.SOCK_STREAM
        with socket.socket(socket.AF_INET, kind) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((f.host_addr, f.host_port))
            except OSError as e:
                raise PortTaken(f, e) from None


_SHOWN_RE = re.compile(r"^(?P<addr>.*):(?P<host>\d+)->(?P<guest>\d+)/(?P<proto>\w+)\Z")


def ports_shown(ports: list[str]) -> list[str]:
    """ps's and inspect's forwards (ADDR:HOST->GUEST/PROTO), each run of consecutive ones
    as one range, as -p gave it: ADDR:21000-21010->21000-21010/tcp (docker's form), not 11."""
    out: list[str] = []
    run: list[tuple[str, int, int, str]] = []

    def flush() -> None:
        if run:
            addr, host, guest, proto = run[0]
            last = run[-1]
            out.append(
                f"{addr}:{host}->{guest}/{proto}"
                if len(run) == 1
                else f"{addr}:{host}-{last[1]}->{guest}-{last[2]}/{proto}"
            )
            run.clear()

    for text in ports:
        m = _SHOWN_RE.match(text)
        if m is None:
            flush()
            out.append(text)
            continue
        here = (m["addr"], int(m["host"]), int(m["guest"]), m["proto"])
        if run and (run[-1][0], run[-1][1] + 1, run[-1][2] + 1, run[-1][3]) != here:
            flush()
        run.append(here)
    flush()
    return out


def runs(forwards: list[PortForward]) -> list[list[PortForward]]:
    """forwards in runs of consecutive ones (host and guest port one more each time, one
    address and protocol): what a -p range gave."""
    out: list[list[PortForward]] = []
    for f in forwards:
        last = out[-1][-1] if out else None
        if last is not None and (
            (last.host_port + 1, last.guest_port + 1, last.protocol, last.host_addr)
            == (f.host_port, f.guest_port, f.protocol, f.host_addr)
        ):
            out[-1].append(f)
        else:
            out.append([f])
    return out
