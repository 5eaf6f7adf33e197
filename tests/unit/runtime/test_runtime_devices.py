"""The device interfaces and their in-process implementations: console, clock, random, KV."""

from __future__ import annotations

import asyncio
import io
import os
from pathlib import Path

import pytest

import summon.devices as devices
from summon.devices import InvalidKey
from summon.runtime.posix_devices import FolderKV, KernelRandom, StdoutConsole, SystemClock


def test_exported_names() -> None:
    assert sorted(devices.__all__) == sorted(
        [
            "Console",
            "Clock",
            "Random",
            "Stack",
            "KV_RO",
            "Server",
            "UDPEndpoint",
            "InvalidKey",
            "TLS",
            "TLSServerContext",
            "TLSClientContext",
            "Secrets",
            "MissingSecret",
            "InvalidSecretName",
            "KV_RW",
            "Transaction",
            "Commit",
            "Conflict",
            "StoreFull",
            "UnknownCommit",
        ]
    )


def test_devices_package_imports_nothing_at_run_time() -> None:
    # Every app that uses devices loads this package, in every image: it must stay free.
    # The package's __init__ gathers its modules; the modules import nothing but each other.
    package = Path(devices.__file__).parent
    modules = sorted(package.glob("*.py"))
    assert {m.name for m in modules} >= {"__init__.py", "core.py", "secure.py", "store.py"}
    for module in modules:
        imports = [
            line.strip()
            for line in module.read_text().splitlines()
            if line.startswith(("import ", "from "))
        ]
        outside = [
            line
            for line in imports
            if line != "from __future__ import annotations"
            and not line.startswith("from summon.devices.")
        ]
        assert outside == [], module.name


@pytest.mark.parametrize(
    ("interface", "call"),
    [
        (devices.Console, lambda d: d.write("x")),
        (devices.Console, lambda d: d.info("x")),
        (devices.Clock, lambda d: d.time()),
        (devices.Random, lambda d: d.read(1)),
        (devices.KV_RO, lambda d: d.get("k")),
        (devices.KV_RO, lambda d: d.list()),
        (devices.KV_RW, lambda d: d.set("k", b"v")),
        (devices.KV_RW, lambda d: d.history()),
        (devices.Transaction, lambda d: d.commit()),
    ],
)
def test_interfaces_are_abstract(interface: type, call: object) -> None:
    with pytest.raises(NotImplementedError):
        call(interface())  # type: ignore[operator]


# --- Console -------------------------------------------------------------------------------


def test_console_levels_and_threshold() -> None:
    out = io.StringIO()
    console = StdoutConsole("warning", out)
    console.debug("d")
    console.info("i")
    console.warning("w")
    console.error("e")
    console.write("plain")
    console.log("error", "via log")
    assert out.getvalue() == "warning: w\nerror: e\nplain\nerror: via log\n"
    with pytest.raises(ValueError, match="log level 'fatal' is not one of"):
        console.log("fatal", "x")
    with pytest.raises(ValueError, match="log level 'verbose' is not one of"):
        StdoutConsole("verbose")


def test_console_never_raises_for_a_broken_stream() -> None:
    out = io.StringIO()
    out.close()
    StdoutConsole("info", out).info("nobody listens")


# --- Clock and Random ----------------------------------------------------------------------


def test_clock() -> None:
    clock = SystemClock()
    assert abs(clock.time() - __import__("time").time()) < 5
    start = clock.monotonic()
    asyncio.run(clock.sleep(0.02))
    assert clock.monotonic() - start >= 0.02


def test_random() -> None:
    rnd = KernelRandom()
    assert len(rnd.read(0)) == 0 and len(rnd.read(33)) == 33
    assert rnd.read(16) != rnd.read(16)
    draws = [rnd.randbelow(6) for _ in range(600)]
    assert set(draws) == set(range(6))
    assert rnd.randbelow(1) == 0
    assert 0 <= rnd.randbelow(2**100 + 1) <= 2**100
    with pytest.raises(ValueError, match="positive bound"):
        rnd.randbelow(0)


# --- KV_RO over a folder -------------------------------------------------------------------


@pytest.fixture
def kv(tmp_path: Path) -> FolderKV:
    root = tmp_path / "data"
    (root / "css").mkdir(parents=True)
    (root / "index.html").write_bytes(b"<h1>hi</h1>")
    (root / "css" / "site.css").write_bytes(b"body{}")
    (root / ".hidden").write_bytes(b"h")
    (root / "empty").mkdir()
    (tmp_path / "secret").write_bytes(b"outside")
    (root / "escape").symlink_to(tmp_path / "secret")
    (root / "escape-dir").symlink_to(tmp_path)
    (root / "alias.html").symlink_to(root / "index.html")
    (root / "css" / "loop").symlink_to(root)
    return FolderKV(str(root))


def test_kv_reads(kv: FolderKV) -> None:
    assert kv.get("index.html") == b"<h1>hi</h1>"
    assert kv.get("css/site.css") == b"body{}"
    assert kv.size("css/site.css") == 6
    assert kv.exists("index.html") and not kv.exists("nope") and not kv.exists("css")
    assert kv.get("alias.html") == b"<h1>hi</h1>"  # a link that stays inside is followed


def test_kv_list(kv: FolderKV) -> None:
    everything = [".hidden", "alias.html", "css/site.css", "index.html"]
    assert kv.list() == everything
    assert kv.list("css/") == ["css/site.css"]
    assert kv.list("cs") == ["css/site.css"]
    assert kv.list("css/site") == ["css/site.css"]
    assert kv.list(".h") == [".hidden"]
    assert kv.list("zzz") == []


@pytest.mark.parametrize("key", ["missing", "css", "css/missing.css", "empty", "escape"])
def test_kv_missing_keys(kv: FolderKV, key: str) -> None:
    with pytest.raises(KeyError) as e:
        kv.get(key)
    assert not isinstance(e.value, InvalidKey)
    with pytest.raises(KeyError):
        kv.size(key)
    assert not kv.exists(key)


@pytest.mark.parametrize(
    "key",
    [
        "",
        "/etc/passwd",
        "../secret",
        "css/../index.html",
        "./index.html",
        "css//site.css",
        "css/",
        "a\0b",
        "escape-dir/secret/..",
    ],
)
def test_kv_invalid_keys(kv: FolderKV, key: str) -> None:
    for method in (kv.get, kv.size, kv.exists):
        with pytest.raises(InvalidKey) as e:
            method(key)
        assert isinstance(e.value, KeyError) and isinstance(e.value, ValueError)
        assert str(e.value).startswith("invalid key ")


def test_kv_never_reads_outside_its_folder(kv: FolderKV) -> None:
    with pytest.raises(KeyError):
        kv.get("escape-dir/secret")
    assert "escape" not in kv.list() and not any(k.startswith("escape") for k in kv.list())


@pytest.mark.parametrize("prefix", ["/", "/etc", "../", "css/../", "a\0"])
def test_kv_invalid_prefixes(kv: FolderKV, prefix: str) -> None:
    with pytest.raises(InvalidKey):
        kv.list(prefix)


def test_kv_reads_afresh(kv: FolderKV) -> None:
    Path(kv.root, "new.txt").write_bytes(b"new")
    assert kv.get("new.txt") == b"new"
    os.remove(Path(kv.root, "new.txt"))
    assert not kv.exists("new.txt")
