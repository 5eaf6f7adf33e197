"""A service whose image is missing says so on the status page from the gateway's start (it
said nothing until its first request), and stops saying so once the image is there."""

from __future__ import annotations

import asyncio
import http.client
import json
import socket
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from summon.gateway.config import ServiceConfig, parse
from summon.gateway.server import Gateway
from summon.gateway.service import State

MISSING = "no image 'web:1' in the store (`summon images`): build or pull it"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def doc(status_port: int, target: str = "sandbox") -> dict[str, Any]:
    return {
        "gateway": {"dns": f"127.0.0.1:{free_port()}", "status": f"127.0.0.1:{status_port}"},
        "service": [{"name": "web", "image": "web:1", "ports": [free_port()], "target": target}],
    }


def status_json(port: int) -> dict[str, dict[str, Any]]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request("GET", "/status.json")
    body = conn.getresponse().read()
    conn.close()
    return {s["name"]: s for s in json.loads(body)["services"]}


async def until(check: Callable[[], bool], timeout: float) -> None:
    for _ in range(int(timeout / 0.05)):
        if check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("not in time")


def no_launch(*args: Any) -> Any:
    raise AssertionError("nothing asked for the service: nothing boots")


def test_a_missing_image_is_said_at_once_and_no_more_once_it_is_there(tmp_path: Path) -> None:
    index = tmp_path / "index.json"
    images: set[str] = set()
    checked: list[list[str]] = []

    async def ahead(
        configs: Sequence[ServiceConfig], found: Any, prepared: Callable[[str, str], None]
    ) -> None:
        checked.append([c.name for c in configs])
        for c in configs:
            prepared(c.name, "" if c.image in images else MISSING)

    async def main() -> None:
        port = free_port()
        gw = Gateway(
            parse(doc(port), tmp_path / "gw.toml"),
            launcher=no_launch,
            ahead=ahead,
            store_index=index,
        )
        await gw.start()
        try:
            await until(lambda: bool(checked), 5)
            web = (await asyncio.to_thread(status_json, port))["web"]
            assert (web["state"], web["error"]) == ("down", MISSING)
            await asyncio.sleep(0.6)  # the store unchanged: not checked again
            assert checked == [["web"]]
            images.add("web:1")  # pulled, say: the store's index is written anew
            index.write_text("{}")
            await until(lambda: len(checked) == 2, 5)
            web = (await asyncio.to_thread(status_json, port))["web"]
            assert (web["state"], web["error"]) == ("down", "")
            # A boot that failed for want of the image is not left failed once it is there.
            svc = gw.services["web"]
            svc.state, svc.reason = State.FAILED, MISSING
            svc.image_error = MISSING
            images.discard("web:1")
            index.write_text("{} ")
            await until(lambda: len(checked) == 3, 5)
            images.add("web:1")
            index.unlink()
            index.write_text("{}")
            await until(lambda: len(checked) == 4, 5)
            web = (await asyncio.to_thread(status_json, port))["web"]
            assert (web["state"], web["error"]) == ("down", "")
        finally:
            await gw.close()

    asyncio.run(asyncio.wait_for(main(), 30))


def test_the_real_ahead_process_says_the_image_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from summon.build.image import build
    from summon.store.layout import Store

    monkeypatch.setenv("SUMMON_STORE", str(tmp_path / "store"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    app = tmp_path / "app"
    app.mkdir()
    (app / "summon.toml").write_text('name = "web"\nentry = "app.py"\nnetwork = "none"\n')
    (app / "app.py").write_text("print('hi')\n")

    async def main() -> None:
        port = free_port()
        gw = Gateway(parse(doc(port, "unix"), tmp_path / "gw.toml"))
        await gw.start()
        try:
            svc = gw.services["web"]
            await until(lambda: bool(svc.image_error), 30)
            web = (await asyncio.to_thread(status_json, port))["web"]
            assert web["error"].startswith("no image 'web:1' in the store"), web
            store = Store(tmp_path / "store")
            await asyncio.to_thread(build, app, store, "web:1", record=False, verify=False)
            await until(lambda: not svc.image_error, 60)
            web = (await asyncio.to_thread(status_json, port))["web"]
            assert web["error"] == "" and web["bom"]["app"] == "web"
        finally:
            await gw.close()

    asyncio.run(asyncio.wait_for(main(), 120))


def test_a_check_of_an_image_replaced_by_a_reload_is_not_applied_to_the_new_one(
    tmp_path: Path,
) -> None:
    """gateway.image_checked: what a check of web:1 says reaches only a service still on
    web:1. A reload that moved `web` to web:2 while web:1 was being read must not leave the
    new service marked with the old image's error."""
    release = asyncio.Event()

    async def ahead(
        configs: Sequence[ServiceConfig], found: Any, prepared: Callable[[str, str], None]
    ) -> None:
        for c in configs:
            if c.image == "web:1":
                await release.wait()  # slow: read while the reload happens
                found(c.name, {"ports": [1]})
                prepared(c.name, MISSING)
            else:
                found(c.name, {"ports": [2]})
                prepared(c.name, "")

    async def main() -> None:
        port = free_port()
        first = doc(port)
        gw = Gateway(parse(first, tmp_path / "gw.toml"), launcher=no_launch, ahead=ahead)
        await gw.start()
        try:
            second = {**first, "service": [{**first["service"][0], "image": "web:2"}]}
            await gw.reload(parse(second, tmp_path / "gw.toml"))
            svc = gw.services["web"]
            await until(lambda: svc.image_ports == (2,), 5)
            release.set()  # the old check ends now, for the old image
            await asyncio.sleep(0.2)
            assert (svc.image_error, svc.image_ports) == ("", (2,))
            web = (await asyncio.to_thread(status_json, port))["web"]
            assert web["error"] == ""
        finally:
            release.set()
            await gw.close()

    asyncio.run(asyncio.wait_for(main(), 30))


def test_a_volume_or_secret_that_fails_a_boot_is_said_in_the_configs_words() -> None:
    # "-v /srv/x:/data: ..." and "--secret k=/x: ..." named flags no gateway user gave.
    from summon.gateway.server import in_config_words

    assert in_config_words("-v /srv/x:/data: image http:1 declares no volume at /data") == (
        "volumes: '/srv/x:/data': image http:1 declares no volume at /data"
    )
    assert in_config_words("--secret k=/x: cannot read it: No such file or directory") == (
        "secrets: 'k=/x': cannot read it: No such file or directory"
    )
    assert in_config_words("no image 'x' in the store") == ""
