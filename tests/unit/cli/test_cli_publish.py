"""`summon run -p`: the forms a user writes, as Docker's, and one line for the rest."""

from __future__ import annotations

import pytest

from summon.cli.run import parse_ports
from summon.errors import UserError
from summon.targets.base import PortForward


@pytest.mark.parametrize(
    ("flag", "forward"),
    [
        ("8080", PortForward(8080, 8080, "tcp", "127.0.0.1")),
        ("8080:80", PortForward(8080, 80, "tcp", "127.0.0.1")),
        ("0.0.0.0:8080:80", PortForward(8080, 80, "tcp", "0.0.0.0")),
        ("5353/udp", PortForward(5353, 5353, "udp", "127.0.0.1")),
        ("127.0.0.2:53:5353/udp", PortForward(53, 5353, "udp", "127.0.0.2")),
    ],
)
def test_publish_forms(flag: str, forward: PortForward) -> None:
    assert parse_ports((flag,)) == (forward,)


@pytest.mark.parametrize(
    ("flag", "needle"),
    [
        ("80:", "expected PORT, HOST:GUEST"),
        ("http", "expected PORT"),
        ("8080:80/sctp", "expected PORT"),
        ("0", "ports are numbers from 1 to 65535"),
        ("70000", "ports are numbers from 1 to 65535"),
        ("8080:70000", "ports are numbers from 1 to 65535"),
    ],
)
def test_bad_publish_flags_are_one_line(flag: str, needle: str) -> None:
    with pytest.raises(UserError, match=needle) as e:
        parse_ports((flag,))
    assert "\n" not in str(e.value) and str(e.value).startswith(f"-p {flag}:")
