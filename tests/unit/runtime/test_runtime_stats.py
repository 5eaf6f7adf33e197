"""The app's own figures: written only when asked (SIGQUIT), read by the host's parser."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from textwrap import dedent

from fake_image import ImageRoot, free_port, read_line, stop

from summon.runtime import stats


def test_parse_takes_numbers_and_leaves_the_rest() -> None:
    assert stats.parse("seq=2 gc0=10 rss=4096 uptime=1.5 junk bad=x =3\n") == {
        "seq": 2,
        "gc0": 10,
        "rss": 4096,
        "uptime": 1.5,
    }


def test_parse_takes_only_finite_numbers_under_identifiers() -> None:
    """The app writes the line (it may answer SIGQUIT itself): NaN and the infinities made
    `summon stats --json` and the gateway's status JSON print NaN and Infinity, which JSON
    readers refuse (jq, a browser's JSON.parse); a name that is not an identifier is no
    figure of the runtime's."""
    found = stats.parse("seq=3 active=nan accepted=inf blocks=-inf requests=1e999 a\x1b[2J=1\n")
    assert found == {"seq": 3}
    json.dumps(found, allow_nan=False)  # what a strict reader takes


def test_figures_name_every_generation_and_the_loaded_parts() -> None:
    found = stats.parse(stats.line())
    for name in ("seq", "gc0", "gc1", "gc2", "blocks", "rss", "uptime"):
        assert name in found, name
    assert found["rss"] > 1_000_000 and found["blocks"] > 1000


def test_written_when_asked_and_only_then(image: ImageRoot, tmp_path: Path) -> None:
    port = free_port()
    image.app(
        {
            "app.py": dedent(
                """
                import asyncio, gc
                from summon.devices import Stack

                async def main(stack: Stack) -> None:
                    async def hello(reader, writer):
                        await reader.readline()
                        writer.write(b"hi\\n")
                        writer.close()

                    server = await stack.start_server(hello, 80)
                    print("listening", flush=True)
                    gc.collect()
                    await server.serve_forever()
                """
            )
        }
    )
    image.config("app:main")
    figures = tmp_path / "figures"
    proc = image.start(env={"SUMMON_STATS": str(figures), "SUMMON_PORTS": f"80={port}"})
    assert read_line(proc) == "listening"
    import socket

    for _ in range(3):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(b"x\n")
            assert sock.recv(10) == b"hi\n"
    time.sleep(0.2)
    assert not figures.exists()  # nobody asked: nothing written
    proc.send_signal(signal.SIGQUIT)
    deadline = time.monotonic() + 10
    while not figures.exists():
        assert time.monotonic() < deadline, "no figures after SIGQUIT"
        time.sleep(0.01)
    found = stats.parse(figures.read_text())
    assert found["seq"] == 1 and found["accepted"] == 3 and found["gc2"] >= 1
    status, _out, _err = stop(proc)
    assert status == 0


def test_sigquit_keeps_its_default_without_summon_stats(image: ImageRoot) -> None:
    image.app({"app.py": "import time\nprint('up', flush=True)\ntime.sleep(30)\n"})
    image.config("/app/app.py")
    proc = image.start()
    assert read_line(proc) == "up"
    proc.send_signal(signal.SIGQUIT)
    proc.communicate(timeout=10)
    assert proc.returncode == -signal.SIGQUIT  # the unix target's Ctrl-\\ still quits
