"""A fake target for unit tests: scripted instances, no processes, optionally a real TCP reply;
and a minimal image in a real store, for the verbs that only list, tag or remove images.

One double for every test that needs a target (the monitor loop, the gateway, the CLI and the
registry), as httpx's MockTransport is for its transports: the real targets are exercised by
tests/integration instead.
"""

from __future__ import annotations

import os
import socketserver
import threading
from typing import Any, ClassVar

from summon.store.layout import CONFIG, INDEX, LAYER_GZIP, MANIFEST, Descriptor, Store
from summon.targets.base import Check, Instance, RunSpec, Stats, Target

FOREVER = None
REPLY = b"HTTP/1.0 200 OK\r\n\r\nhello\n"


class _Reply(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        self.request.recv(1024)
        self.request.sendall(REPLY)


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


class FakeInstance(Instance):
    """Exits with `code` after `runs_for` seconds (never, for None); stop() ends it at once.

    With serve_port it answers every connection on 127.0.0.1:serve_port with REPLY, like an
    app behind a sandbox's forwarder; with console it writes one line there at start.
    """

    def __init__(
        self,
        code: int = 0,
        runs_for: float | None = FOREVER,
        console: int | None = None,
        n: int = 1,
        serve_port: int | None = None,
    ) -> None:
        self.code = code
        self.exited = threading.Event()
        self.stopped = False
        self.server: _Server | None = None
        if console is not None:
            os.write(console, f"run {n}\n".encode())
        if serve_port is not None:
            self.server = _Server(("127.0.0.1", serve_port), _Reply)
            threading.Thread(target=self.server.serve_forever, daemon=True).start()
        if runs_for is not None:
            threading.Timer(runs_for, self.exited.set).start()

    @property
    def pid(self) -> int:
        return 4242

    def wait(self, timeout: float | None = None) -> int | None:
        return self.code if self.exited.wait(timeout) else None

    def _close_server(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def stop(self, grace: float = 10.0) -> int:
        if not self.exited.is_set():
            self.code = 143  # as if SIGTERM ended it
        self.stopped = True
        self._close_server()
        self.exited.set()
        return self.code

    def die(self, code: int = 1) -> None:
        """The app exits on its own."""
        self.code = code
        self._close_server()
        self.stopped = True
        self.exited.set()

    def stats(self) -> Stats:
        return Stats(memory_bytes=1234, cpu_seconds=0.5, network={"tcp__retransmit": 2})


class FakeTarget(Target):
    """Starts instances from a script: an exit status (after a short run), FOREVER, or an error."""

    name: ClassVar[str] = "fake"
    description: ClassVar[str] = "scripted instances"
    options: ClassVar[frozenset[str]] = frozenset({"speed"})

    def __init__(
        self, script: list[int | BaseException | None] | None = None, speed: str = ""
    ) -> None:
        self.script = list(script or [])
        self.starts = 0
        self.speed = speed

    @classmethod
    def check(cls) -> list[Check]:
        return [Check("fake: always there", True)]

    def start(self, spec: RunSpec) -> Instance:
        item = self.script.pop(0) if self.script else FOREVER
        self.starts += 1
        if isinstance(item, BaseException):
            raise item
        if item is FOREVER:
            return FakeInstance(0, None, spec.stdout, self.starts)
        return FakeInstance(item, 0.02, spec.stdout, self.starts)


class Output:
    """A console stream for a target's `output`: what the instance forwards, for assertions."""

    def __init__(self) -> None:
        self.data = b""
        self.lock = threading.Lock()

    def write(self, data: bytes) -> int:
        with self.lock:
            self.data += data
        return len(data)

    def flush(self) -> None:
        pass

    def text(self) -> str:
        with self.lock:
            return self.data.decode(errors="replace")


def store_image(store: Store, tag: str, text: bytes) -> tuple[Descriptor, Descriptor, Descriptor]:
    """(index, config, layer) of a minimal image tagged tag; its blobs differ by text."""
    return layer_image(store, tag, text, {"os": "linux", "text": text.decode()})


def layer_image(
    store: Store, tag: str, layer_bytes: bytes, config_doc: dict[str, Any]
) -> tuple[Descriptor, Descriptor, Descriptor]:
    """(index, config, layer) of an image of one layer (its bytes as given), tagged tag."""
    layer = store.put_bytes(layer_bytes, LAYER_GZIP)
    config = store.put_json(config_doc, CONFIG)
    manifest = store.put_json(
        {"schemaVersion": 2, "mediaType": MANIFEST, "config": config.to_json(),
         "layers": [layer.to_json()]},
        MANIFEST,
    )  # fmt: skip
    index = store.put_json(
        {"schemaVersion": 2, "mediaType": INDEX, "manifests": [manifest.to_json()]}, INDEX
    )
    store.tag(tag, index)
    return index, config, layer
