"""The gateway config file: what it accepts, the one-line errors, the service addresses."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from summon.gateway.config import ConfigError, allocate_addresses, check_paths, load

GOOD = """
[gateway]
dns = "127.0.0.1:5353"
zone = "Summon.Test"
status = "127.0.0.1:8099"
upstream = "127.0.0.53"

[[service]]
name = "http"
image = "http:latest"
target = "sandbox"
ports = [80, 8080]
idle_timeout = "30s"
memory = "64M"
boot_timeout = "500ms"
max_instances = 1
volumes = ["todo:/data", "/srv/shared:/shared"]
secrets = ["tls.key=/etc/app/tls.key", "api-token=/etc/app/token"]

[[service]]
name = "api"
image = "api:1"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gateway.toml"
    path.write_text(text)
    return path


def test_a_full_config_loads(tmp_path: Path) -> None:
    cfg = load(write(tmp_path, GOOD))
    assert cfg.dns == ("127.0.0.1", 5353)
    assert cfg.zone == "summon.test."
    assert cfg.upstream == ("127.0.0.53", 53)
    http, api = cfg.services
    assert http.ports == (80, 8080)
    assert http.idle_timeout == 30.0
    assert http.boot_timeout == 0.5
    assert http.memory == 64 << 20
    assert api.target == "sandbox" and api.ports == (80,) and api.memory is None
    assert http.volumes == (("todo", "/data"), ("/srv/shared", "/shared"))
    assert api.volumes == ()
    # Secrets keep their own names, and the service its own (a secret named like a key of the
    # table once renamed the service after itself).
    assert http.name == "http"
    assert http.secrets == (("tls.key", "/etc/app/tls.key"), ("api-token", "/etc/app/token"))
    assert api.secrets == ()


@pytest.mark.parametrize(
    ("edit", "key"),
    [
        (('idle_timeout = "30s"', 'idle_timeout = "soon"'), "idle_timeout"),
        (('idle_timeout = "30s"', "idle_timeout = 0"), "idle_timeout"),
        # Other scripts' digits, which float() and int() read (٣ is 3): refused as typos.
        (('idle_timeout = "30s"', 'idle_timeout = "٣0s"'), "idle_timeout"),
        # TOML's nan and inf passed as numbers of seconds (nan is not <= 0).
        (('idle_timeout = "30s"', "idle_timeout = nan"), "idle_timeout: nan is not a duration"),
        (('boot_timeout = "500ms"', "boot_timeout = inf"), "boot_timeout: inf is not a dur"),
        (('memory = "64M"', 'memory = "٦4M"'), "memory"),
        (('dns = "127.0.0.1:5353"', 'dns = "127.0.0.1:٥353"'), "gateway.dns"),
        (('dns = "127.0.0.1:5353"', 'dns = "127.0.0.1:5_353"'), "gateway.dns"),
        (('target = "sandbox"', 'target = "docker"'), "target"),
        (("ports = [80, 8080]", "ports = [80, 70000]"), "ports"),
        (("ports = [80, 8080]", 'ports = "80"'), "ports"),
        (("ports = [80, 8080]", 'ports = [80, "8080-8079"]'), "ports: '8080-8079' ends before"),
        (
            ("ports = [80, 8080]", 'ports = [80, "79-81"]'),
            "ports: [80, '79-81'] names port 80 twice",
        ),
        (("ports = [80, 8080]", 'ports = ["1-2000"]'), "ports: over 1024 ports"),
        (("ports = [80, 8080]", 'ports = [80, "ftp"]'), "ports: 'ftp' is not a port number or"),
        (("ports = [80, 8080]", 'ports = ["1-70000"]'), "ports: 70000 is not a port number"),
        (('memory = "64M"', 'memory = "lots"'), "memory"),
        (("max_instances = 1", "max_instances = 3"), "max_instances"),
        (('name = "http"', 'name = "Not_A_Label"'), "name"),
        (('name = "api"', 'name = "http"'), "name"),
        # Names no DNS query can carry (over 254 characters with the final dot).
        (
            ('zone = "Summon.Test"', f'zone = "{"a" * 60}.{"b" * 60}.{"c" * 60}.{"d" * 60}"'),
            "gateway.zone: over 243 characters: its SOA's hostmaster.aaa",
        ),
        # Forwarding to itself: each query looped until 256 forwards waited (SERVFAIL).
        (
            ('upstream = "127.0.0.53"', 'upstream = "127.0.0.1:5353"'),
            "gateway.upstream: '127.0.0.1:5353' is the gateway's own DNS server",
        ),
        # ns.<zone> is the DNS server's own name: a service "ns" was never reached by name.
        (('name = "api"', 'name = "ns"'), "service[1].name: 'ns' names the zone's DNS server"),
        (('dns = "127.0.0.1:5353"', 'dns = "localhost:53"'), "gateway.dns"),
        (('zone = "Summon.Test"', 'zone = ""'), "gateway.zone"),
        (("max_instances = 1", "max_instance = 1"), "max_instance"),
        (('image = "api:1"', ""), "image"),
        (('name = "api"', ""), "service[1].name: missing; name the service with a DNS label"),
        (('"todo:/data"', '"todo"'), "volumes: 'todo': expected NAME:/PATH"),
        (('"todo:/data"', '"to do:/data"'), "volumes: 'to do:/data': 'to do' is not a volume"),
        (('"todo:/data"', '"todo:/proc"'), "volumes: 'todo:/proc': /proc belongs to"),
        (('"todo:/data"', '"todo:/data", "other:/data"'), "'other:/data': two volumes at /data"),
        (('"api-token=/etc/app/token"', '"api-token"'), "secrets: 'api-token' is not NAME="),
        (('"api-token=/etc/app/token"', '"../x=/etc/x"'), "secrets: '../x=/etc/x': "),
        (('"api-token=/etc/app/token"', '"t=token"'), "secrets: 't=token' is not NAME=/ABS"),
        (
            ('"api-token=/etc/app/token"', '"tls.key=/x"'),
            "secrets: 'tls.key=/x': the secret tls.key is given twice",
        ),
        (('"api-token=/etc/app/token"', '"a/b=/x"'), "'a/b=/x': secret name 'a/b' must be one"),
    ],
)
def test_errors_are_one_line_naming_file_and_key(
    tmp_path: Path, edit: tuple[str, str], key: str
) -> None:
    path = write(tmp_path, GOOD.replace(*edit))
    with pytest.raises(ConfigError) as e:
        load(path)
    message = str(e.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: ")
    assert key in message
    assert e.value.exit_status == 2


def test_a_service_serves_a_range_of_ports(tmp_path: Path) -> None:
    # FTP's passive ports and the like: one number each was the only way (dozens of them).
    cfg = load(write(tmp_path, GOOD.replace("ports = [80, 8080]", 'ports = [21, "21000-21003"]')))
    assert cfg.services[0].ports == (21, 21000, 21001, 21002, 21003)


def test_memory_is_between_what_python_needs_and_what_the_host_has(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A service given more memory than the host has was accepted, and every boot of it
    # failed or took the host's memory; 5M was accepted too, and the app died at each boot.
    monkeypatch.setattr("summon.manifest.host_memory", lambda: 2 << 30)
    for size, why in (
        ('"3G"', "memory: '3G' is more than this host has (2048M)"),
        ('"1048576G"', "memory: '1048576G' is more than this host has (2048M)"),
        ('"5M"', "memory: '5M': at least 8M is needed to start Python"),
        ("-1", "memory: -1: at least 8M is needed to start Python"),
    ):
        path = write(tmp_path, GOOD.replace('memory = "64M"', f"memory = {size}"))
        with pytest.raises(ConfigError) as e:
            load(path)
        assert str(e.value) == f"{path}: service 'http': {why}"
        assert e.value.exit_status == 2
    path = write(tmp_path, GOOD.replace('memory = "64M"', 'memory = "2G"'))
    assert load(path).services[0].memory == 2 << 30
    # A host whose /proc/meminfo says nothing: no upper bound rather than a refusal.
    monkeypatch.setattr("summon.manifest.host_memory", lambda: 0)
    path = write(tmp_path, GOOD.replace('memory = "64M"', 'memory = "3G"'))
    assert load(path).services[0].memory == 3 << 30


def test_a_gateway_server_on_a_services_port_is_named(tmp_path: Path) -> None:
    # The service listened first, and the gateway refused to start with "cannot listen on
    # 0.0.0.0:8080 for its status server: Address already in use": its own service held it.
    http = allocate_addresses(["http", "api"])["http"]
    for gateway, key, where in (
        ('status = "0.0.0.0:8080"', "gateway.status", "0.0.0.0:8080"),
        ('dns = "0.0.0.0:80"', "gateway.dns", "0.0.0.0:80"),
        (f'status = "{http}:8080"', "gateway.status", f"{http}:8080"),
    ):
        text = GOOD.replace('status = "127.0.0.1:8099"', "").replace('dns = "127.0.0.1:5353"', "")
        path = write(tmp_path, text.replace("[gateway]", f"[gateway]\n{gateway}"))
        with pytest.raises(ConfigError) as e:
            load(path)
        port = where.rsplit(":", 1)[1]
        assert str(e.value) == (
            f"{path}: {key}: {where} is also where service 'http' listens ({http}:{port}): "
            "give one of them another port"
        )
    # Another port on all addresses, or the same port on another address, is no clash.
    for gateway in ('status = "0.0.0.0:9000"', f'status = "{http}:9000"'):
        load(write(tmp_path, GOOD.replace('status = "127.0.0.1:8099"', gateway)))


def test_a_service_whose_dns_name_is_too_long_is_named(tmp_path: Path) -> None:
    # Accepted: a zone of 256 characters, or a service whose name.zone. is over 254; no DNS
    # query can carry such a name, so the service was never reached by name.
    zone = f"{'a' * 60}.{'b' * 60}.{'c' * 60}.{'d' * 50}"  # 233 characters: fits
    text = GOOD.replace('zone = "Summon.Test"', f'zone = "{zone}"')
    assert load(write(tmp_path, text)).zone == zone + "."
    path = write(tmp_path, text.replace('name = "api"', f'name = "{"e" * 20}"'))
    with pytest.raises(ConfigError) as e:
        load(path)
    assert str(e.value) == (
        f"{path}: service[1].name: {'e' * 20}.{zone}. is over 254 characters (a DNS name's "
        "limit): give the service or the zone a shorter name"
    )


def test_bad_toml_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        load(write(tmp_path, "[gateway\n"))
    with pytest.raises(ConfigError, match="cannot read"):
        load(tmp_path / "nope.toml")


def test_a_file_that_is_not_a_config_is_one_line_not_read_forever(tmp_path: Path) -> None:
    # /dev/zero was read until memory ran out; bytes that are not UTF-8 were an internal error.
    with pytest.raises(ConfigError) as e:
        load(Path("/dev/zero"))
    assert str(e.value) == "/dev/zero: over 4 MiB: not a gateway config"
    binary = tmp_path / "g.toml"
    binary.write_bytes(b"\xff\xfe[gateway]\n")
    with pytest.raises(ConfigError) as e:
        load(binary)
    assert str(e.value) == f"{binary}: not UTF-8 text"


def test_addresses_are_stable_loopback_and_distinct() -> None:
    names = [f"svc{i}" for i in range(2000)]
    first = allocate_addresses(names)
    assert allocate_addresses(list(reversed(names))) == first  # order of the file: no matter
    assert len(set(first.values())) == len(names)
    for addr in first.values():
        ip = ipaddress.IPv4Address(addr)
        assert ip in ipaddress.IPv4Network("127.0.0.0/8")
        assert not addr.startswith("127.0.") and not addr.endswith((".0", ".255"))
    # One service's address does not depend on which others are configured.
    assert allocate_addresses(["svc7"])["svc7"] == first["svc7"]


def test_collisions_resolve_deterministically(monkeypatch: pytest.MonkeyPatch) -> None:
    from summon.gateway import config

    class Same:
        def __init__(self, data: bytes) -> None:
            pass

        def digest(self) -> bytes:
            return bytes([1, 2, 3, 4]) + bytes(28)

    monkeypatch.setattr(config, "sha256", Same)
    got = allocate_addresses(["b", "a", "c"])
    assert got == {"a": "127.2.3.4", "b": "127.2.3.5", "c": "127.2.3.6"}
    assert allocate_addresses(["c", "b", "a"]) == got


def test_the_cli_reports_a_bad_file_in_one_line_exit_2(tmp_path: Path) -> None:
    import subprocess
    import sys

    path = write(tmp_path, GOOD.replace('target = "sandbox"', 'target = "docker"'))
    r = subprocess.run(
        [sys.executable, "-m", "summon.cli.main", "gateway", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0
    assert f"{path}: service 'http': target: 'docker' is not one of" in r.stderr


@pytest.mark.parametrize("key", ["idle_timeout", "boot_timeout", "freeze_after", "snapshot_after"])
@pytest.mark.parametrize(
    ("value", "said"),
    [
        # A bare number was taken as seconds without a word (a reader may mean minutes).
        ("30", '30 has no unit: write it as a string with one, such as "30s"'),
        ("1.5", '1.5 has no unit: write it as a string with one, such as "1.5s"'),
        ('"30"', "'30' has no unit: write it with one, such as \"30s\""),
        # Accepted before: a wait no one means.
        (
            '"99999999999999999h"',
            "'99999999999999999h' is over the most a duration may be, 720h (30 days)",
        ),
        ('"721h"', "'721h' is over the most a duration may be, 720h (30 days)"),
    ],
)
def test_every_duration_needs_a_unit_and_has_a_bound(
    tmp_path: Path, key: str, value: str, said: str
) -> None:
    text = f'[[service]]\nname = "web"\nimage = "web:1"\n{key} = {value}\n'
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as e:
        load(path)
    assert str(e.value) == f"{path}: service 'web': {key}: {said}"
    assert e.value.exit_status == 2


def test_durations_up_to_the_bound_are_taken(tmp_path: Path) -> None:
    text = '[[service]]\nname = "web"\nimage = "web:1"\nidle_timeout = "720h"\n'
    assert load(write(tmp_path, text)).services[0].idle_timeout == 720 * 3600


@pytest.mark.parametrize(
    ("dns", "status", "said"),
    [
        ("127.0.0.1:8053", "127.0.0.1:8053", "127.0.0.1:8053 is also where gateway.dns listens"),
        ("0.0.0.0:8053", "127.0.0.1:8053", "127.0.0.1:8053 is also where gateway.dns listens"),
        ("127.0.0.1:8053", "0.0.0.0:8053", "0.0.0.0:8053 is also where gateway.dns listens"),
    ],
)
def test_dns_and_status_on_one_port_are_named_before_binding(
    tmp_path: Path, dns: str, status: str, said: str
) -> None:
    """At start it said only "cannot listen on ...: Address already in use"."""
    path = write(tmp_path, f'[gateway]\ndns = "{dns}"\nstatus = "{status}"\n')
    with pytest.raises(ConfigError) as e:
        load(path)
    assert str(e.value).startswith(f"{path}: gateway.status: {said}")
    assert "give one of them another port" in str(e.value)


def test_dns_and_status_on_one_port_of_different_addresses_are_fine(tmp_path: Path) -> None:
    path = write(tmp_path, '[gateway]\ndns = "127.0.0.1:8053"\nstatus = "127.0.0.2:8053"\n')
    assert load(path).status == ("127.0.0.2", 8053)


def test_missing_secret_files_and_host_folders_are_named_at_start(tmp_path: Path) -> None:
    """They were accepted, and the service failed at its first request."""
    (tmp_path / "key").write_text("k")
    (tmp_path / "data").mkdir()
    base = '[[service]]\nname = "web"\nimage = "web:1"\n'
    good = f'secrets = ["k={tmp_path}/key"]\nvolumes = ["{tmp_path}/data:/data", "named:/v"]\n'
    check_paths(load(write(tmp_path, base + good)))  # all there; a named volume is made later
    for edit, said in (
        ((f"{tmp_path}/key", f"{tmp_path}/gone"), f"secrets: k={tmp_path}/gone: no such file"),
        ((f"{tmp_path}/key", f"{tmp_path}/data"), f"secrets: k={tmp_path}/data: not a file"),
        (
            (f"{tmp_path}/data:", f"{tmp_path}/nope:"),
            f"volumes: {tmp_path}/nope:/data: no such folder",
        ),
        ((f"{tmp_path}/data:", f"{tmp_path}/key:"), f"volumes: {tmp_path}/key:/data: not a folder"),
    ):
        path = write(tmp_path, base + good.replace(*edit))
        with pytest.raises(ConfigError) as e:
            check_paths(load(path))
        assert str(e.value) == f"{path}: service 'web': {said}"
        assert e.value.exit_status == 2
