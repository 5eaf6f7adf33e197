"""`summon run -p` (and -v): the forms a user writes, as Docker's, and one line for the rest."""

from __future__ import annotations

import re
import socket
from pathlib import Path

import pytest

from summon.cli.ports import check_ports_free, ports_shown
from summon.cli.run import (
    check_guest_ports,
    parse_ports,
    parse_volumes,
    served_args_warning,
    unmounted_volumes,
)
from summon.errors import UserError
from summon.targets.base import PortForward, PortTaken


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


def test_a_range_publishes_each_port_of_it() -> None:
    # FTP's passive ports and the like: one -p per port was the only way (dozens of flags).
    assert parse_ports(("21000-21002:31000-31002",)) == (
        PortForward(21000, 31000), PortForward(21001, 31001), PortForward(21002, 31002),
    )  # fmt: skip
    assert parse_ports(("127.0.0.1:8000-8001:9000-9001/udp", "7000-7001")) == (
        PortForward(8000, 9000, "udp"), PortForward(8001, 9001, "udp"),
        PortForward(7000, 7000), PortForward(7001, 7001),
    )  # fmt: skip
    assert len(parse_ports(("0.0.0.0:21000-21010:21000-21010",))) == 11


def test_ps_shows_a_range_as_one() -> None:
    forwards = parse_ports(("21000-21010:21000-21010", "8080:80", "53:53/udp"))
    assert ports_shown([str(f) for f in forwards]) == [
        "127.0.0.1:21000-21010->21000-21010/tcp", "127.0.0.1:8080->80/tcp",
        "127.0.0.1:53->53/udp",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("flag", "needle"),
    [
        ("80:", "expected PORT, HOST:GUEST"),
        ("http", "expected PORT"),
        ("8080:80/sctp", "expected PORT"),
        ("0", "ports are numbers from 1 to 65535"),
        ("70000", "ports are numbers from 1 to 65535"),
        ("8080:70000", "ports are numbers from 1 to 65535"),
        # An address bind() would misread (inet_aton: "1.2.3" is 1.2.0.3) or fail on with a
        # message about something else: said as what it is.
        ("1.2.3:8080:80", "1.2.3 is not an IPv4 address in dotted form"),
        ("256.0.0.1:8080:80", "256.0.0.1 is not an IPv4 address"),
        ("localhost:8080:80", "(IPv6 and host names are not supported)"),
        ("[::1]:8080:80", "[::1] is not an IPv4 address"),
        # ADDR:HOST:GUEST with one port too many, or an address inet_aton would take
        ("8080:80:90", "8080 is not an IPv4 address"),
        ("300.1.1.1:8080:80", "300.1.1.1 is not an IPv4 address"),
        # bind() takes the broadcast address: an instance "served" where no client connects
        ("255.255.255.255:8080:80", "255.255.255.255 is a multicast, reserved or broadcast"),
        ("224.0.0.1:8080:80", "224.0.0.1 is a multicast, reserved or broadcast"),
        # int() reads any script's digits: "-p ٨٠٨٠:80" published 8080
        ("\u0668\u0660\u0668\u0660:80", "expected PORT, HOST:GUEST"),
        # ranges: of one length on both sides, first to last, within 1-65535
        ("8000-8003:80", "the host ports (4) and the guest ports (1) differ in number"),
        ("80:8000-8003", "the host ports (1) and the guest ports (4) differ in number"),
        ("8000-8003:9000-9001", "the host ports (4) and the guest ports (2) differ"),
        ("8003-8000", "the range 8003-8000 ends before it begins"),
        ("65530-65540", "ports are numbers from 1 to 65535"),
        ("8000-:80", "expected PORT"),
        ("1-65535", "at most 1024 ports can be published in all"),
    ],
)
def test_bad_publish_flags_are_one_line(flag: str, needle: str) -> None:
    with pytest.raises(UserError, match=re.escape(needle)) as e:
        parse_ports((flag,))
    assert "\n" not in str(e.value) and str(e.value).startswith(f"-p {flag}:")


WSGI = {"entry": {"kind": "wsgi", "module": "app", "attr": "app"}, "ports": ["8000/tcp"]}
SCRIPT = {"entry": {"kind": "script", "path": "/app/s.py"}, "ports": ["8000/tcp", "5353/udp"]}


def test_a_forward_to_a_port_a_served_app_does_not_listen_on_is_refused() -> None:
    # The runtime listens on the image's port only: requests to another one waited for
    # nobody until the client gave up.
    with pytest.raises(UserError) as info:
        check_guest_ports(parse_ports(("19521:9999",)), WSGI)
    assert str(info.value) == (
        "-p 19521:9999: the image's app is served on port(s) 8000/tcp (its manifest's ports), "
        "not 9999/tcp; did you mean -p 19521:8000?"
    )
    check_guest_ports(parse_ports(("19521:8000",)), WSGI)  # the listed one
    check_guest_ports(parse_ports(("19521:8000",)), {**WSGI, "ports": ["8000"]})  # older form


def test_a_forward_to_an_unlisted_port_of_a_script_is_a_warning(
    capsys: pytest.CaptureFixture[str],
) -> None:
    check_guest_ports(parse_ports(("19522:5353/udp", "19523:8000")), SCRIPT)
    assert capsys.readouterr().err == ""
    check_guest_ports(parse_ports(("19524:9000",)), SCRIPT)
    assert capsys.readouterr().err == (
        "summon: warning: -p 19524:9000: the image lists port(s) 8000/tcp, 5353/udp, not "
        "9000/tcp; connections reach the app only if it listens there itself\n"
    )
    check_guest_ports(parse_ports(("21000-21010:21000-21010/udp", "5353/udp")), SCRIPT)
    assert capsys.readouterr().err == (  # one line, not one per port of the range
        "summon: warning: -p 21000-21010:21000-21010/udp: the image lists port(s) 8000/tcp, "
        "5353/udp, not 21000-21010/udp; connections reach the app only if it listens there "
        "itself\n"
    )
    check_guest_ports(parse_ports(("19525:8000",)), {**SCRIPT, "ports": []})
    assert capsys.readouterr().err == (  # was "lists port(s) none, not 8000/tcp"
        "summon: warning: -p 19525:8000: the image lists no ports; connections reach the app "
        "only if it listens on 8000/tcp itself\n"
    )


def test_a_volume_the_image_has_and_the_run_leaves_unmounted_is_named() -> None:
    # A Litestar app's sqlite on /data failed with "unable to open database file" and
    # nothing said /data was an empty read-only folder.
    config = {"volumes": ["/data", "/cache"], "stores": {}}
    assert unmounted_volumes((), config) == ["/data", "/cache"]
    assert unmounted_volumes(parse_volumes(("notes:/data",)), config) == ["/cache"]
    # A store's volume: the runtime says so itself, naming the store.
    assert unmounted_volumes((), {"volumes": ["/data"], "stores": {"todo": "/data/todo"}}) == []


def test_a_host_folder_whose_name_is_not_utf8_is_refused_when_read(tmp_path: Path) -> None:
    # The instance's config (JSON) could not name it: the start failed with "'utf-8' codec
    # can't encode character '\udcff'", exit status 1, and an instance left "start failed".
    folder = tmp_path / b"dir\xff".decode(errors="surrogateescape")
    folder.mkdir()
    with pytest.raises(UserError) as e:
        parse_volumes((f"{folder}:/data",))
    assert str(e.value).endswith(f"the folder's name {str(folder)!r} is not UTF-8; rename it")
    utf8 = tmp_path / "dossier-é"
    utf8.mkdir()
    assert parse_volumes((f"{utf8}:/data",))[0].name == str(utf8)


def test_two_volumes_at_one_path_are_a_flag_error() -> None:
    # Refused only at the start before: after an instance was recorded ("start failed").
    with pytest.raises(UserError) as e:
        parse_volumes(("a:/data", "b:/data"))
    assert str(e.value) == "-v b:/data: two volumes at /data"


def test_args_to_a_served_app_are_said_to_run_no_command() -> None:
    # `summon run site -- migrate` on a Django image whose entry is its WSGI app: the server
    # started and nothing migrated, without a word.
    wsgi = {"entry": {"kind": "wsgi", "module": "mysite.wsgi", "attr": "application"}}
    assert served_args_warning(("migrate",), wsgi) == (
        "warning: ARGS 'migrate': the image's entry is the WSGI app mysite.wsgi:application, "
        "which the runtime serves whatever sys.argv holds, so no command runs; a command such "
        'as `manage.py migrate` needs an image whose entry is its script (entry = "manage.py")'
    )
    assert served_args_warning((), wsgi) is None
    script = {"entry": {"kind": "script", "path": "/app/manage.py"}}
    assert served_args_warning(("migrate",), script) is None


def test_a_taken_udp_port_is_named_with_its_address_and_protocol() -> None:
    # `-p 127.0.0.1:PORT:53/udp` on a taken port said "-p 127.0.0.1:PORT: cannot listen
    # there", as for TCP: with -p PORT:53 -p PORT:53/udp it did not say which one was taken.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        for flag, said in (
            (f"127.0.0.1:{port}:53/udp", f"-p 127.0.0.1:{port}/udp: cannot listen there"),
            (f"{port}:53/udp", f"-p 127.0.0.1:{port}/udp: cannot listen there"),
        ):
            with pytest.raises(PortTaken) as refused:
                check_ports_free(parse_ports((flag,)))
            assert str(refused.value) == (
                f"{said} (Address already in use); choose another host port or a local address"
            )
    # An address not on this host (TEST-NET-1, RFC 5737): named with it, as TCP's is.
    with pytest.raises(PortTaken, match=r"^-p 192\.0\.2\.1:5353/udp: cannot listen there \("):
        check_ports_free(parse_ports(("192.0.2.1:5353:53/udp",)))
    with pytest.raises(PortTaken, match=r"^-p 192\.0\.2\.1:8080: cannot listen there \("):
        check_ports_free(parse_ports(("192.0.2.1:8080:80",)))
