"""The runtime as images run it (python -S -E boot.py): devices passed to the entry by
annotation and parameter name, the errors naming the parameter they cannot fill, the
network a Stack needs."""

from __future__ import annotations

from textwrap import dedent

import pytest
from fake_image import ImageRoot

# --- devices -------------------------------------------------------------------------------

DEVICES_APP = """
from __future__ import annotations

import summon.devices
from summon.devices import KV_RO, Clock, Console, Random


def main(console: Console, clock: summon.devices.Clock, rnd: "Random", files: KV_RO) -> int:
    console.info("info line")
    console.debug("hidden at the default level")
    console.write("raw line")
    assert 1.6e9 < clock.time() and clock.monotonic() > 0
    assert len(rnd.read(16)) == 16 and rnd.read(16) != rnd.read(16)
    print(sorted(files.list()), files.get("a.txt"), files.size("sub/b.txt"))
    return 0
"""


def test_each_device_is_injected(image: ImageRoot) -> None:
    image.app({"app.py": DEVICES_APP})
    image.data("things", {"a.txt": b"A", "sub/b.txt": b"BB"})
    image.config("app:main", data={"things": "/data/things"})
    result = image.run()
    assert result.stderr == ""
    assert result.stdout.splitlines() == [
        "info: info line",
        "raw line",
        "['a.txt', 'sub/b.txt'] b'A' 2",
    ]
    assert result.returncode == 0


def test_console_level_from_the_environment(image: ImageRoot) -> None:
    image.app({"app.py": DEVICES_APP})
    image.data("things", {"a.txt": b"A", "sub/b.txt": b"BB"})
    image.config("app:main", data={"things": "/data/things"}, env={"SUMMON_LOG_LEVEL": "debug"})
    assert "debug: hidden at the default level" in image.run().stdout.splitlines()
    result = image.run(env={"SUMMON_LOG_LEVEL": "loud"})
    assert result.returncode == 2
    assert result.stderr.startswith("summon: SUMMON_LOG_LEVEL: log level 'loud' is not one of")


def test_annotations_as_classes_keyword_only_and_defaults(image: ImageRoot) -> None:
    # No `from __future__ import annotations`: the annotations are the classes themselves.
    image.app(
        {
            "app.py": dedent("""
                from summon.devices import Clock, Console
                from summon.runtime.posix_devices import StdoutConsole

                def main(log: Console, limit: int = 3, *, clock: Clock, extra=None) -> int:
                    assert isinstance(log, StdoutConsole) and extra is None
                    log.info(f"{limit} {type(clock).__name__}")
                    return limit
            """)
        }
    )
    image.config("app:main")
    result = image.run()
    assert (result.returncode, result.stdout) == (3, "info: 3 SystemClock\n")


def test_kv_by_parameter_name(image: ImageRoot) -> None:
    image.app(
        {
            "app.py": dedent("""
                from summon.devices import KV_RO
                def main(static: KV_RO, my_files: KV_RO) -> None:
                    print(static.get("k").decode(), my_files.get("k").decode())
            """)
        }
    )
    image.data("static", {"k": b"from static"})
    image.data("my-files", {"k": b"from my-files"})
    image.config("app:main", data={"static": "/data/static", "my-files": "/data/my-files"})
    result = image.run()
    assert (result.returncode, result.stdout) == (0, "from static from my-files\n")


def test_kv_the_only_folder_whatever_the_name(image: ImageRoot) -> None:
    image.app(
        {"app.py": "from summon.devices import KV_RO\ndef main(x: KV_RO):\n    print(x.list())\n"}
    )
    image.data("static", {"index.html": b"<p>"})
    image.config("app:main", data={"static": "/data/static"})
    assert image.run().stdout == "['index.html']\n"


@pytest.mark.parametrize(
    ("params", "data", "message"),
    [
        (
            "files: KV_RO",
            {"a": "/data/a", "b": "/data/b"},
            "summon: parameter 'files' of app:main asks for a KV_RO, but no data folder has "
            "that name; name the parameter after one of: a, b\n",
        ),
        (
            "files: KV_RO",
            {},
            "summon: parameter 'files' of app:main asks for a KV_RO, but the image has no data "
            'folder; add data = ["files"] to [tool.summon] and rebuild\n',
        ),
        (
            "log: Console, count",
            {},
            "summon: parameter 'count' of app:main has no annotation; annotate it with one of "
            "Console, Clock, Random, Stack, KV_RO, KV_RW, TLS, Secrets (from summon.devices), "
            "or give it a default\n",
        ),
        (
            "count: int",
            {},
            "summon: parameter 'count' of app:main is annotated 'int', which is not a device; "
            "use one of Console, Clock, Random, Stack, KV_RO, KV_RW, TLS, Secrets "
            "(from summon.devices)\n",
        ),
        (
            "*, port: 'Port'",
            {},
            "summon: parameter 'port' of app:main is annotated 'Port', which is not a device; "
            "use one of Console, Clock, Random, Stack, KV_RO, KV_RW, TLS, Secrets "
            "(from summon.devices)\n",
        ),
    ],
)
def test_device_errors_name_the_parameter(
    image: ImageRoot, params: str, data: dict[str, str], message: str
) -> None:
    image.app(
        {
            "app.py": "from __future__ import annotations\n"
            "from summon.devices import *\n"
            f"def main({params}):\n    print('called')\n"
        }
    )
    for name in data:
        image.data(name, {"k": b"v"})
    image.config("app:main", data=data)
    result = image.run()
    assert (result.returncode, result.stdout, result.stderr) == (2, "", message)


@pytest.mark.parametrize(
    ("network", "message"),
    [
        (
            "direct",
            'summon: network = "direct" needs a network device from the target '
            "(SUMMON_TAP_FD or SUMMON_NET_IFACE); run it with --target sandbox\n",
        ),
        (
            "none",
            "summon: parameter 'net' of app:main asks for a Stack, but the image was built with "
            "network = 'none'; set network = \"socket\" in [tool.summon]\n",
        ),
    ],
)
def test_stack_needs_a_network(image: ImageRoot, network: str, message: str) -> None:
    image.app({"app.py": "from summon.devices import Stack\nasync def main(net: Stack): pass\n"})
    image.config("app:main", network=network)
    result = image.run()
    assert (result.returncode, result.stderr) == (2, message)


def test_bad_summon_ports(image: ImageRoot) -> None:
    image.app({"app.py": "from summon.devices import Stack\nasync def main(net: Stack): pass\n"})
    image.config("app:main")
    result = image.run(env={"SUMMON_PORTS": "80/sctp=8080"})
    assert result.returncode == 2
    assert result.stderr == (
        "summon: SUMMON_PORTS: '80/sctp=8080' is not GUEST=HOST such as 80/tcp=8080 or "
        "53/udp=5353\n"
    )
