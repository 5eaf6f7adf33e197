"""The egress allowlist (summon.egress), its rules for the sandbox (targets/sandbox/egress.py)
and the sandbox's /etc files (targets/sandbox/etc.py), without root: parsing, the manifest
key, the iptables input, name resolution with a stand-in resolver, the bind mounts."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from summon import manifest
from summon.egress import EgressError, EgressRule, parse_rule, parse_rules
from summon.errors import ManifestError, UserError
from summon.targets.base import RunSpec
from summon.targets.sandbox.config import oci_config
from summon.targets.sandbox.egress import (
    REFUSED_CHAIN,
    SANDBOX_CIDR,
    Egress,
    resolve,
    ruleset,
)
from summon.targets.sandbox.etc import etc_files, hosts_text


@pytest.mark.parametrize(
    ("entry", "rule"),
    [
        ("db.example:5432", EgressRule("db.example", 5432)),
        ("DB.Example.:5432", EgressRule("db.example", 5432)),
        ("10.1.2.3:6379", EgressRule("10.1.2.3", 6379)),
        ("10.0.0.0/8:443", EgressRule("10.0.0.0/8", 443)),
        ("10.0.0.53:53/udp", EgressRule("10.0.0.53", 53, "udp")),
        ("api:443/tcp", EgressRule("api", 443)),
    ],
)
def test_entries_parse(entry: str, rule: EgressRule) -> None:
    assert parse_rule(entry) == rule
    assert parse_rule(str(rule)) == rule  # str() writes what parses back


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("db", 'is not "HOST:PORT"'),
        ("db:0", "'0' is not a port number (1-65535)"),
        ("db:http", "'http' is not a port number"),
        ("db:53/sctp", "tcp or udp, not 'sctp'"),
        ("[::1]:80", "IPv6 destinations are not supported"),
        ("10.0.0.1/8:80", "has host bits set"),
        ("1.2.3:80", "is not an IPv4 address or network"),
        ("0.0.0.0/0:80", "0.0.0.0/0 allows everywhere"),
        ("db_1:80", "is not a host name, address or network"),
        # Loopback in an instance is its own: such an entry could never connect anywhere.
        (
            "127.0.0.1:19600",
            "instance's own, so this entry can never reach the host; a "
            "service on the host's 127.0.0.1 is 10.0.2.2 from a sandbox (10.0.3.2 from a VM): "
            'allow "10.0.2.2:19600"',
        ),
        ("127.0.0.0/8:53/udp", 'allow "10.0.2.2:53/udp"'),
        ("localhost:5432", 'allow "10.0.2.2:5432"'),
        ("api.localhost:80", "loopback inside an instance is the instance's own"),
    ],
)
def test_bad_entries_say_why(entry: str, message: str) -> None:
    with pytest.raises(EgressError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_rule(entry)


def test_duplicates_drop() -> None:
    assert parse_rules(["a:1", "A:1", "a:1/udp"]) == (EgressRule("a", 1), EgressRule("a", 1, "udp"))


def write_app(folder: Path, extra: str) -> Path:
    folder.mkdir()
    (folder / "app.py").write_text("def main():\n    pass\n")
    (folder / "summon.toml").write_text(f'name = "e"\nentry = "app:main"\n{extra}')
    return folder


def test_the_manifest_key(tmp_path: Path) -> None:
    m = manifest.load(write_app(tmp_path / "a", 'egress = ["db:5432", "10.0.0.0/8:443"]\n'))
    assert m.egress == ("db:5432", "10.0.0.0/8:443")
    assert manifest.load(write_app(tmp_path / "b", "")).egress == ()
    with pytest.raises(ManifestError, match=r"summon.toml: egress: 'db' is not "):
        manifest.load(write_app(tmp_path / "c", 'egress = ["db"]\n'))
    with pytest.raises(ManifestError, match='egress: outbound connections need network = "socket"'):
        manifest.load(write_app(tmp_path / "d", 'network = "direct"\negress = ["db:1"]\n'))


def test_names_resolve_on_the_host_and_unknown_ones_fail() -> None:
    table = {"db": ["10.9.0.5", "10.9.0.6"]}

    def resolver(name: str) -> list[str]:
        if name not in table:
            raise OSError(-2, "Name or service not known")
        return table[name]

    allowed, names = resolve(parse_rules(["db:5432", "10.0.0.0/8:443"]), resolver)
    assert [(str(r), str(n)) for r, n in allowed] == [
        ("db:5432", "10.9.0.5/32"), ("db:5432", "10.9.0.6/32"), ("10.0.0.0/8:443", "10.0.0.0/8"),
    ]  # fmt: skip
    assert names == table
    with pytest.raises(UserError, match=r"egress 'nowhere:1': nowhere does not resolve"):
        resolve(parse_rules(["nowhere:1"]), resolver)
    # A name the host resolves to its own loopback (a /etc/hosts alias) cannot be reached
    # from the instance either.
    table["upstream"] = ["127.0.1.1"]
    with pytest.raises(UserError, match=r"egress 'upstream:8080': upstream resolves to "
                       r"127.0.1.1 here: loopback inside an instance"):  # fmt: skip
        resolve(parse_rules(["upstream:8080"]), resolver)


@pytest.mark.parametrize("answer", ["10.0.2.2", "10.0.2.3", "10.0.3.2"])
def test_a_name_that_resolves_into_the_instances_own_network_is_refused(answer: str) -> None:
    """Rule: the host's loopback (slirp4netns's .2: 10.0.2.2 from a sandbox, 10.0.3.2 from a
    VM) is opened only by an entry that gives that address. A name's answer is whoever
    controls its DNS's to choose: `api.example.com` answered with 10.0.2.2 opened the host's
    127.0.0.1 at the entry's port (a local database, say)."""
    vm_cidr = ipaddress.IPv4Network("10.0.3.0/24")
    refused = rf"egress 'api.example.com:5432': api.example.com resolves to {answer} here, inside"
    with pytest.raises(UserError, match=refused + " the instance's own network"):
        resolve(
            parse_rules(["api.example.com:5432"]),
            lambda name: ["203.0.113.7", answer],
            own=(vm_cidr, SANDBOX_CIDR),
        )
    # An entry that gives the address itself still opens it (docs/sandbox.md, Egress).
    allowed, _names = resolve(parse_rules(["10.0.2.2:5432"]), lambda name: [])
    assert [str(n) for _rule, n in allowed] == ["10.0.2.2/32"]


def test_the_rules_refuse_all_but_the_list() -> None:
    rule = parse_rule("10.0.2.2:8080")
    v4, v6 = ruleset([(rule, ipaddress.IPv4Network("10.0.2.2/32"))], dns=False)
    lines = v4.splitlines()
    assert lines[0] == "*filter" and lines[-1] == "COMMIT"
    allow = '-A OUTPUT -d 10.0.2.2/32 -p tcp --dport 8080 -m comment --comment "egress 10.0.2.2:8080" -j ACCEPT'  # noqa: E501
    # Order matters: loopback, answers and the allowed come before the refusing jump.
    jump = f"-A OUTPUT -j {REFUSED_CHAIN}"
    assert lines.index("-A OUTPUT -o lo -j ACCEPT") < lines.index(allow) < lines.index(jump)
    assert f"-A {REFUSED_CHAIN} -p tcp -j REJECT --reject-with tcp-reset" in lines
    assert "-A INPUT -i tap0 -j DROP" in lines
    assert ":OUTPUT DROP [0:0]" in v6.splitlines()  # no IPv6 leaves at all
    assert "--dport 53" not in v4  # addresses only: no resolver either
    with_names, _ = ruleset([(rule, ipaddress.IPv4Network("10.0.2.2/32"))], dns=True)
    query = "-A OUTPUT -d 10.0.2.3/32 -p udp --dport 53 -j ACCEPT"
    assert with_names.splitlines().index(query) < with_names.splitlines().index(jump)


def test_hosts_names_the_instance_and_the_resolved() -> None:
    text = hosts_text(["web-1", "abc123", "web-1", "localhost"], {"db": ["10.9.0.5"]})
    assert text.splitlines() == [
        "127.0.0.1\tlocalhost",
        "::1\tlocalhost ip6-localhost ip6-loopback",
        "127.0.0.1\tweb-1 abc123",
        "10.9.0.5\tdb",
    ]


def test_etc_files_are_bound_read_only_where_the_image_has_them(tmp_path: Path) -> None:
    rootfs, bundle = tmp_path / "rootfs", tmp_path / "bundle"
    (rootfs / "etc").mkdir(parents=True)
    bundle.mkdir()
    (rootfs / "etc" / "hosts").write_text("")
    (rootfs / "etc" / "resolv.conf").write_text("")
    # No nsswitch.conf in this (older) image: runc would create it in the image; skipped.
    files = etc_files(rootfs, ["web-1"], nameserver="10.0.2.3")
    assert sorted(files) == ["/etc/hosts", "/etc/resolv.conf"]
    assert files["/etc/resolv.conf"].startswith(b"nameserver 10.0.2.3\n")
    assert sorted(etc_files(rootfs, ["web-1"])) == ["/etc/hosts"]  # no egress
    bound = {path: bundle / "etc" / path.rsplit("/", 1)[1] for path in files}
    spec = RunSpec(name="x", image="i", rootfs=rootfs, app_config={}, state_dir=tmp_path)
    mounts = oci_config(spec, tmp_path / "ns", tmp_path / "sock", files=bound)["mounts"]
    bind = next(m for m in mounts if m["destination"] == "/etc/hosts")
    assert bind["type"] == "bind" and bind["source"] == str(bundle / "etc" / "hosts")
    assert {"ro", "nosuid", "nodev", "noexec"} <= set(bind["options"])


@pytest.mark.parametrize(
    ("entry", "opens"),
    [("10.0.2.2:5432", True), ("10.0.2.0/24:5432", True), ("10.0.0.0/8:5432", False),
     ("10.0.0.0/16:5432", False), ("10.9.0.5:5432", False)],
)  # fmt: skip
def test_only_an_entry_inside_slirps_network_opens_the_hosts_loopback(
    entry: str, opens: bool, tmp_path: Path
) -> None:
    """Rule: the host's loopback (10.0.2.2) is let through slirp4netns only for an entry
    whose network lies inside slirp4netns's own 10.0.2.0/24; a company network written as
    10.0.0.0/8 holds it too, and opened the host's 127.0.0.1 at the entry's port."""
    egress = Egress(tmp_path / "netns", [entry], tmp_path / "log", resolver=lambda name: [])
    assert egress.opens_host_loopback() is opens
