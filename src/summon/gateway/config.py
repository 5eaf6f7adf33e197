"""The gateway's TOML config file: loading, validation (one-line errors), service addresses.

The format is documented in docs/gateway.md. Every error names the file and the key.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from summon import targets
from summon.errors import UserError
from summon.gateway import tiers
from summon.manifest_ports import check_range
from summon.targets import DEFAULT_TARGET
from summon.targets.base import VOLUMES

try:  # CPython's own SHA-256: without OpenSSL (gateway/main.py), hashlib would load all six
    from _sha256 import sha256  # type: ignore[import-not-found]
except ImportError:  # another Python's layout (3.12: _sha2)
    from hashlib import sha256

_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\Z")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*\Z", re.ASCII)
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
MAX_NAME = 254  # characters of a DNS name with its final dot (255 octets on the wire)
NS_LABEL = "ns"  # ns.<zone> is the DNS server's own name (dns.py), no service's
MIN_MEMORY = 8 << 20  # bytes, as cli/run.py's and the manifest's minimum
_GATEWAY_KEYS = {"dns", "zone", "status", "upstream"}
_SERVICE_KEYS = {
    "name", "image", "target", "ports", "idle_timeout", "memory", "boot_timeout",
    "max_instances", "options", "secrets", "volumes", "freeze_after", "snapshot_after",
}  # fmt: skip


class ConfigError(UserError):
    """The gateway config file is missing or wrong; the message names the file and key."""


@dataclass(frozen=True)
class ServiceConfig:
    name: str  # a DNS label under the zone
    image: str
    target: str = DEFAULT_TARGET
    ports: tuple[int, ...] = (80,)
    idle_timeout: float = 30.0
    memory: int | None = None  # None: the image's own
    boot_timeout: float = 10.0
    max_instances: int = 1
    options: tuple[tuple[str, Any], ...] = ()  # the target's own options (accel = "tcg")
    secrets: tuple[tuple[str, str], ...] = ()  # (name, host file), as --secret NAME=FILE
    volumes: tuple[tuple[str, str], ...] = ()  # (volume name or host folder, path), as -v
    # Idle tiers before down (gateway/tiers.py): seconds without a connection; None: skipped.
    freeze_after: float | None = None
    snapshot_after: float | None = None
    ports_given: bool = True  # False: `ports` left out, (80,) by default

    def tier_timeouts(self) -> dict[str, float | None]:
        """Each tier's config key (tiers.TIERS, the fields of the same names) -> timeout."""
        return {key: getattr(self, key) for _tier, key, _capability in tiers.TIERS}


@dataclass(frozen=True)
class GatewayConfig:
    path: Path
    dns: tuple[str, int] = ("127.0.0.1", 5353)
    zone: str = "summon.test."
    status: tuple[str, int] = ("127.0.0.1", 8099)
    upstream: tuple[str, int] | None = None
    services: tuple[ServiceConfig, ...] = ()

    def addresses(self) -> dict[str, str]:
        return allocate_addresses([s.name for s in self.services])


MAX_DURATION = 30 * 24 * 3600.0  # seconds: 30 days (720h), longer than any wait worth setting


def parse_duration(value: object, bad: Any) -> float:
    """30s, 500ms, 2m or 1h: a number with its unit, at most MAX_DURATION.

    A bare number is refused rather than read as seconds: `idle_timeout = 30` was taken as
    30 s without a word, though a reader may mean minutes (or, from other tools, ms)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        if not math.isfinite(value):  # TOML's inf and nan: no wait of any length
            raise bad(f'{value!r} is not a duration such as "30s"')
        raise bad(f'{value!r} has no unit: write it as a string with one, such as "{value}s"')
    m = _DURATION.match(str(value))
    if not m:
        raise bad(f'{value!r} is not a duration such as "30s"')
    if m.group(2) is None:
        raise bad(f'{value!r} has no unit: write it with one, such as "{m.group(1)}s"')
    seconds = float(m.group(1)) * _DURATION_UNITS[m.group(2)]
    if seconds <= 0:
        raise bad(f"{value!r} must be more than zero")
    if seconds > MAX_DURATION:  # 99999999999999999h was taken, a wait no one means
        raise bad(f"{value!r} is over the most a duration may be, 720h (30 days)")
    return seconds


def parse_hostport(value: object, bad: Any, default_port: int) -> tuple[str, int]:
    """127.0.0.1:5353, or an address alone (default_port). IPv4 literals only."""
    if not isinstance(value, str):
        raise bad(f'{value!r} is not an address such as "127.0.0.1:{default_port}"')
    host, sep, port_text = value.rpartition(":")
    if not sep:
        host, port_text = value, str(default_port)
    try:
        ipaddress.IPv4Address(host)
        if not (port_text.isascii() and port_text.isdigit()):  # int() reads '٣' and '1_0'
            raise ValueError(port_text)
        port = int(port_text)
    except ValueError:
        raise bad(f'{value!r} is not an address such as "127.0.0.1:{default_port}"') from None
    if not 1 <= port <= 65535:
        raise bad(f"{port} is not a port number (1-65535)")
    return host, port


def allocate_addresses(names: list[str]) -> dict[str, str]:
    """One loopback address per service, from a hash of its name: stable across restarts.

    Candidates are 127.x.y.z with x != 0 (so never 127.0.0.1 nor anything near the usual
    127.0.0.x/127.0.1.1 uses) and z not 0 or 255. On a collision the name that sorts first
    keeps the address and the other probes forward, so the outcome depends only on the names.
    """
    taken: dict[int, str] = {}
    result: dict[str, str] = {}
    for name in sorted(set(names)):
        n = int.from_bytes(sha256(name.encode()).digest()[:4], "big")
        while True:
            n %= 1 << 24
            x, y, z = n >> 16, (n >> 8) & 0xFF, n & 0xFF
            if x != 0 and z not in (0, 255) and n not in taken:
                break
            n += 1
        taken[n] = name
        result[name] = f"127.{x}.{y}.{z}"
    return result


def load(path: Path) -> GatewayConfig:
    return parse(read(path), path)


MAX_CONFIG = 4 << 20  # bytes; thousands of services fit in far less


def read(path: Path) -> dict[str, Any]:
    """The TOML document at path, not checked yet (parse does that)."""
    import tomllib  # here: the gateway's process reads the file only on a reload (main.py)

    try:
        with path.open("rb") as f:
            data = f.read(MAX_CONFIG + 1)  # /dev/zero, say: not read without end
        if len(data) > MAX_CONFIG:
            raise ConfigError(f"{path}: over {MAX_CONFIG >> 20} MiB: not a gateway config")
        return tomllib.loads(data.decode())
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None


def parse(doc: dict[str, Any], path: Path) -> GatewayConfig:
    def bad_at(key: str) -> Any:
        return lambda why: ConfigError(f"{path}: {key}: {why}")

    for key in doc:
        if key not in ("gateway", "service"):
            raise ConfigError(f"{path}: {key}: unknown section (expected [gateway], [[service]])")
    gw = doc.get("gateway", {})
    if not isinstance(gw, dict):
        raise ConfigError(f"{path}: gateway: must be a table ([gateway])")
    for key in gw:
        if key not in _GATEWAY_KEYS:
            raise ConfigError(f"{path}: gateway.{key}: unknown key")
    dns = parse_hostport(gw.get("dns", "127.0.0.1:5353"), bad_at("gateway.dns"), 53)
    status = parse_hostport(gw.get("status", "127.0.0.1:8099"), bad_at("gateway.status"), 80)
    upstream = None
    if "upstream" in gw:
        upstream = parse_hostport(gw["upstream"], bad_at("gateway.upstream"), 53)
        if upstream[1] == dns[1] and dns[0] in (upstream[0], "0.0.0.0"):
            # each query forwarded to itself until 256 waited, and the next were SERVFAIL
            raise bad_at("gateway.upstream")(
                f"{gw['upstream']!r} is the gateway's own DNS server: it would ask itself"
            )
    zone = gw.get("zone", "summon.test.")
    if not isinstance(zone, str) or not zone.strip("."):
        raise ConfigError(f"{path}: gateway.zone: {zone!r} is not a DNS name such as summon.test.")
    zone = zone.strip(".").lower() + "."
    if not all(_LABEL.match(label) for label in zone.rstrip(".").split(".")):
        raise ConfigError(f"{path}: gateway.zone: {zone!r} is not a DNS name such as summon.test.")
    if len(zone) > (most := MAX_NAME - len("hostmaster.")):  # the SOA's, dns.py
        raise ConfigError(
            f"{path}: gateway.zone: over {most} characters: its SOA's hostmaster.{zone} would "
            f"be over a DNS name's {MAX_NAME}"
        )

    raw = doc.get("service", [])
    if not isinstance(raw, list):
        raise ConfigError(f"{path}: service: must be an array of tables ([[service]])")
    services: list[ServiceConfig] = []
    seen: set[str] = set()
    for i, entry in enumerate(raw):
        if not isinstance(entry, dict):
            raise ConfigError(f"{path}: service[{i}]: must be a table")
        services.append(_service(entry, f"service[{i}]", bad_at))
        name = services[-1].name
        if name == NS_LABEL:  # dns.py answers ns.<zone> itself: the service would be unreachable
            raise ConfigError(
                f"{path}: service[{i}].name: 'ns' names the zone's DNS server (ns.{zone}): "
                "name the service otherwise"
            )
        if len(name) + 1 + len(zone) > MAX_NAME:  # a name no DNS query can carry
            raise ConfigError(
                f"{path}: service[{i}].name: {name}.{zone} is over {MAX_NAME} characters "
                "(a DNS name's limit): give the service or the zone a shorter name"
            )
        if name in seen:
            raise ConfigError(f"{path}: service[{i}].name: {name!r} is configured twice")
        seen.add(name)
    config = GatewayConfig(path, dns, zone, status, upstream, tuple(services))
    _check_clashes(config, bad_at)
    return config


def _check_clashes(config: GatewayConfig, bad_at: Any) -> None:
    """Two of the gateway's listeners on one address and port, found before any binds: the
    DNS server (TCP too), the status server and the services' ports. The second to bind
    said only "cannot listen on 0.0.0.0:8099 for its status server: Address already in
    use", naming neither setting. (Services cannot clash: each has its own address.)"""
    (dns_host, dns_port), (status_host, status_port) = config.dns, config.status
    if dns_port == status_port and (
        dns_host == status_host or "0.0.0.0" in (dns_host, status_host)
    ):
        # both listen on TCP: the second said only "Address already in use" at start
        raise bad_at("gateway.status")(
            f"{status_host}:{status_port} is also where gateway.dns listens "
            f"({dns_host}:{dns_port}, UDP and TCP): give one of them another port"
        )
    addresses = config.addresses()
    for key, (host, port) in (("dns", config.dns), ("status", config.status)):
        for svc in config.services:
            if port in svc.ports and host in ("0.0.0.0", addresses[svc.name]):
                raise bad_at(f"gateway.{key}")(
                    f"{host}:{port} is also where service {svc.name!r} listens "
                    f"({addresses[svc.name]}:{port}): give one of them another port"
                )


def _service(entry: dict[str, Any], where: str, bad_at: Any) -> ServiceConfig:
    for key in entry:
        if key not in _SERVICE_KEYS:
            raise bad_at(f"{where}.{key}")("unknown key")
    name = entry.get("name")
    if name is None:  # (it said "None is not a DNS label")
        raise bad_at(f"{where}.name")('missing; name the service with a DNS label such as "http"')
    if not isinstance(name, str) or not _LABEL.match(name):
        raise bad_at(f"{where}.name")(
            f"{name!r} is not a DNS label (a-z, 0-9, '-', at most 63 characters)"
        )
    where = f"service {name!r}"
    image = entry.get("image")
    if not isinstance(image, str) or not image:
        raise bad_at(f"{where}: image")('missing; name an image such as "http:latest"')
    target = entry.get("target", DEFAULT_TARGET)
    if target not in targets.names():
        raise bad_at(f"{where}: target")(f"{target!r} is not one of {', '.join(targets.names())}")
    options = entry.get("options", {})
    if not isinstance(options, dict):
        raise bad_at(f"{where}: options")('must be a table, such as { accel = "tcg" }')
    takes = targets.target_class(target).options
    for key in options:
        if key not in takes:
            raise bad_at(f"{where}: options.{key}")(
                f"not an option of target {target} (it takes: {', '.join(sorted(takes)) or 'none'})"
            )
    try:
        targets.get(target, **options)  # the target checks its options' values (no I/O)
    except (UserError, TypeError, ValueError) as e:
        raise bad_at(f"{where}: options")(str(e)) from None
    ports = service_ports(entry.get("ports", [80]), bad_at(f"{where}: ports"))
    idle = parse_duration(entry.get("idle_timeout", "30s"), bad_at(f"{where}: idle_timeout"))
    after: dict[str, float] = {}
    capabilities = targets.target_class(target).capabilities
    for tier, key, capability in tiers.TIERS:
        if key not in entry or capability is None:
            continue
        after[key] = parse_duration(entry[key], bad_at(f"{where}: {key}"))
        if capability not in capabilities:
            raise bad_at(f"{where}: {key}")(
                f"target {target} has no {tier} tier (it lacks the {capability} capability)"
            )
        if after[key] >= idle:
            raise bad_at(f"{where}: {key}")(
                f"{entry[key]!r} is not less than idle_timeout ({idle:g}s): it would never come"
            )
    if after.get("snapshot_after", float("inf")) <= after.get("freeze_after", 0.0):
        raise bad_at(f"{where}: snapshot_after")("must be more than freeze_after")
    boot = parse_duration(entry.get("boot_timeout", "10s"), bad_at(f"{where}: boot_timeout"))
    memory = None
    if "memory" in entry:
        # not at rest: the gateway's memory counts
        from summon.manifest import host_memory, parse_size

        given = entry["memory"]
        memory = parse_size(given, bad_at(f"{where}: memory"))
        if memory < MIN_MEMORY:  # as `summon run -m` and the manifest: Python dies below
            raise bad_at(f"{where}: memory")(
                f"{given!r}: at least {MIN_MEMORY >> 20}M is needed to start Python"
            )
        if (total := host_memory()) and memory > total:  # every boot would fail, or worse
            raise bad_at(f"{where}: memory")(
                f"{given!r} is more than this host has ({total >> 20}M)"
            )
    max_instances = entry.get("max_instances", 1)
    # One instance per service so far: a value that would scale out is refused, not ignored.
    if max_instances != 1 or isinstance(max_instances, bool):
        raise bad_at(f"{where}: max_instances")(f"{max_instances!r}: only 1 is supported so far")
    raw_secrets = entry.get("secrets", [])
    if not isinstance(raw_secrets, list) or not all(isinstance(v, str) for v in raw_secrets):
        raise bad_at(f"{where}: secrets")('must be a list such as ["tls.key=/etc/app/tls.key"]')
    given = _secrets(raw_secrets, bad_at(f"{where}: secrets")) if raw_secrets else []
    raw_volumes = entry.get("volumes", [])
    if not isinstance(raw_volumes, list) or not all(isinstance(v, str) for v in raw_volumes):
        raise bad_at(f"{where}: volumes")('must be a list such as ["todo:/data"]')
    mounts = _volumes(raw_volumes, bad_at(f"{where}: volumes")) if raw_volumes else []
    if mounts and VOLUMES not in targets.target_class(target).capabilities:
        raise bad_at(f"{where}: volumes")(f"target {target} has no volumes")
    return ServiceConfig(
        name, image, target, ports, idle, memory, boot, max_instances,
        tuple(sorted(options.items())), tuple(given), tuple(mounts),
        after.get("freeze_after"), after.get("snapshot_after"), "ports" in entry,
    )  # fmt: skip


# The next two only for a service that has secrets or volumes: their modules load the
# runtime's devices and the volume disks' tools, which the gateway at rest does without.


def _secrets(values: list[str], bad: Any) -> list[tuple[str, str]]:
    """NAME=/ABSOLUTE/FILE each -> (name, file)."""
    from summon.secrets import check_name

    given: list[tuple[str, str]] = []
    for value in values:
        secret, sep, file = value.partition("=")
        if not sep or not secret or not file.startswith("/"):
            raise bad(f"{value!r} is not NAME=/ABSOLUTE/FILE")
        try:
            check_name(secret)
        except ValueError as e:  # a KeyError too, whose str() is its message's repr
            raise bad(f"{value!r}: {e.args[0] if e.args else e}") from None
        if any(secret == name for name, _ in given):
            raise bad(f"{value!r}: the secret {secret} is given twice")
        given.append((secret, file))
    return given


def _volumes(values: list[str], bad: Any) -> list[tuple[str, str]]:
    """NAME:/PATH or /HOST/FOLDER:/PATH each -> (source, path)."""
    from summon.targets.volumes import NAME_RE, mount_path_problem

    mounts: list[tuple[str, str]] = []
    for value in values:
        source, sep, path = value.rpartition(":")
        why = mount_path_problem(path) if sep and source else "expected NAME:/PATH"
        if not why and not source.startswith("/") and not NAME_RE.match(source):
            why = f"{source!r} is not a volume name (letters, digits, '.', '_', '-')"
        if not why and any(path == taken for _, taken in mounts):
            why = f"two volumes at {path}"
        if why:
            raise bad(f"{value!r}: {why}")
        mounts.append((source, path))
    return mounts


def check_paths(config: GatewayConfig) -> None:
    """Each service's secret files and host folders (volumes) exist: at the gateway's start
    and at each reload, rather than at the service's first request (its boot failed then,
    long after the config was accepted). Named volumes are made when first used."""

    for svc in config.services:
        where = f"{config.path}: service {svc.name!r}"
        for secret, file in svc.secrets:
            if not os.path.isfile(file):
                why = "no such file" if not os.path.exists(file) else "not a file"
                raise ConfigError(f"{where}: secrets: {secret}={file}: {why}")
        for source, path in svc.volumes:
            if source.startswith("/") and not os.path.isdir(source):
                why = "no such folder" if not os.path.exists(source) else "not a folder"
                raise ConfigError(f"{where}: volumes: {source}:{path}: {why}")


# The most ports one service serves: each is a listener on its address and a forward.
MAX_SERVICE_PORTS = 1024
_RANGE_RE = re.compile(r"^(\d{1,5})-(\d{1,5})\Z", re.ASCII)


def service_ports(given: Any, bad: Any) -> tuple[int, ...]:
    """A service's `ports`: numbers and ranges ("21000-21010", FTP's passive ports, say),
    each port once; bad(why) is the error to raise."""
    if not isinstance(given, list) or not given:
        raise bad(f'{given!r} is not a list of port numbers such as [80] or [21, "21000-21010"]')
    ports: list[int] = []
    for item in given:
        if isinstance(item, int) and not isinstance(item, bool):
            first = last = item
        elif isinstance(item, str) and (m := _RANGE_RE.match(item)):
            first, last = int(m[1]), int(m[2])
        else:
            raise bad(f'{item!r} is not a port number or a range such as "21000-21010"')
        check_range(first, last, item, bad)
        twice = sorted(set(ports).intersection(range(first, last + 1)))
        if twice:
            raise bad(f"{given!r} names port {twice[0]} twice")
        ports += range(first, last + 1)
        if len(ports) > MAX_SERVICE_PORTS:
            raise bad(f"over {MAX_SERVICE_PORTS} ports: one service serves at most that many")
    return tuple(ports)
