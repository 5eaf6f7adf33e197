"""Debian's Chromium, headless, driven over the DevTools protocol: for browser tests and benchmarks.

    with Chromium(profile_dir) as browser:
        page = browser.new_page()
        page.send("Network.enable")
        page.navigate("http://127.0.0.1:8080/")
        page.evaluate("document.title")

One websocket to the browser, pages attached as flat sessions (Target.attachToTarget with
flatten), a reader thread that files each reply by id and keeps every event for wait_event.
Nothing is downloaded: the flags keep Chromium from its background connections, which this
machine's closed network would refuse anyway (and stall on).
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import websocket

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-features=Translate,OptimizationHints,MediaRouter",
    "--remote-debugging-port=0",
)
START_TIMEOUT = 20.0


def chromium_binary() -> str | None:
    """Debian's chromium, if installed."""
    return shutil.which("chromium")


class CDPError(Exception):
    """The browser answered a command with an error, or did not answer in time."""


class Session:
    """One attached target (a page): commands and its events."""

    def __init__(self, browser: Chromium, session_id: str, target_id: str) -> None:
        self.browser = browser
        self.id = session_id
        self.target_id = target_id

    def send(self, method: str, params: dict[str, Any] | None = None, timeout: float = 30.0) -> Any:
        return self.browser.send(method, params, session=self.id, timeout=timeout)

    def events(self, method: str, since: int = 0) -> list[dict[str, Any]]:
        """Every `method` event of this page, from position `since` (see mark) on."""
        return self.browser.events(method, self.id, since)

    def wait_event(
        self,
        method: str,
        where: Callable[[dict[str, Any]], bool] = lambda p: True,
        timeout: float = 30.0,
        since: int = 0,
    ) -> dict[str, Any]:
        return self.browser.wait_event(method, where, timeout, self.id, since)

    def mark(self) -> int:
        """A position in the event log: wait_event(since=mark) sees only what comes after."""
        return self.browser.mark()

    def navigate(self, url: str) -> None:
        self.send("Page.enable")
        mark = self.mark()
        self.send("Page.navigate", {"url": url})
        self.wait_event("Page.loadEventFired", since=mark)

    def evaluate(self, expression: str, timeout: float = 30.0) -> Any:
        """The value of a JavaScript expression in the page (awaited if it is a promise)."""
        reply = self.send(
            "Runtime.evaluate",
            {"expression": expression, "awaitPromise": True, "returnByValue": True},
            timeout=timeout,
        )
        if "exceptionDetails" in reply:
            details = reply["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text")
            raise CDPError(f"{expression[:80]!r} raised: {text}")
        return reply["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 30.0, interval: float = 0.1) -> Any:
        """Evaluate until the expression is truthy; its value. CDPError after timeout."""
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(CDPError):
                value = self.evaluate(expression)
                if value:
                    return value
            if time.monotonic() > deadline:
                raise CDPError(f"{expression!r} not true within {timeout} s")
            time.sleep(interval)

    def screenshot(self, path: Path) -> Path:
        data = self.send("Page.captureScreenshot", {"format": "png"})["data"]
        path.write_bytes(base64.b64decode(data))
        return path


class Chromium:
    """A headless Chromium with its own profile folder, closed (and killed) on exit."""

    def __init__(self, profile: Path, binary: str | None = None) -> None:
        binary = binary or chromium_binary()
        if binary is None:
            raise FileNotFoundError("chromium is not installed (apt-get install chromium)")
        profile.mkdir(parents=True, exist_ok=True)
        port_file = profile / "DevToolsActivePort"
        with contextlib.suppress(FileNotFoundError):
            port_file.unlink()
        self._log = open(profile.parent / f"{profile.name}-chromium.log", "ab")
        self.proc = subprocess.Popen(
            [binary, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
            stdout=self._log,
            stderr=self._log,
            start_new_session=True,
        )
        deadline = time.monotonic() + START_TIMEOUT
        while not port_file.is_file() or len(port_file.read_text().splitlines()) < 2:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise CDPError(f"chromium did not start (see {self._log.name})")
            time.sleep(0.05)
        port, path = port_file.read_text().splitlines()[:2]
        self.ws = websocket.create_connection(
            f"ws://127.0.0.1:{port}{path}", suppress_origin=True, timeout=None
        )
        self._ids = itertools.count(1)
        self._lock = threading.Condition()
        self._replies: dict[int, dict[str, Any]] = {}
        self._events: list[tuple[str, str, dict[str, Any]]] = []  # (session, method, params)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def __enter__(self) -> Chromium:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _read(self) -> None:
        while True:
            try:
                message = json.loads(self.ws.recv())
            except (websocket.WebSocketException, OSError, ValueError):
                break
            with self._lock:
                if "id" in message:
                    self._replies[message["id"]] = message
                else:
                    self._events.append(
                        (message.get("sessionId", ""), message["method"], message.get("params", {}))
                    )
                self._lock.notify_all()
        with self._lock:
            self._lock.notify_all()

    def send(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        session: str = "",
        timeout: float = 30.0,
    ) -> Any:
        ident = next(self._ids)
        message: dict[str, Any] = {"id": ident, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        self.ws.send(json.dumps(message))
        deadline = time.monotonic() + timeout
        with self._lock:
            while ident not in self._replies:
                left = deadline - time.monotonic()
                if left <= 0 or not self._reader.is_alive():
                    raise CDPError(f"{method}: no answer within {timeout} s")
                self._lock.wait(left)
            reply = self._replies.pop(ident)
        if "error" in reply:
            raise CDPError(f"{method}: {reply['error'].get('message')}")
        return reply.get("result", {})

    def mark(self) -> int:
        with self._lock:
            return len(self._events)

    def events(self, method: str, session: str = "", since: int = 0) -> list[dict[str, Any]]:
        with self._lock:
            return [p for s, m, p in self._events[since:] if m == method and s == session]

    def wait_event(
        self,
        method: str,
        where: Callable[[dict[str, Any]], bool] = lambda p: True,
        timeout: float = 30.0,
        session: str = "",
        since: int = 0,
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                for s, m, p in self._events[since:]:
                    if m == method and s == session and where(p):
                        return p
                left = deadline - time.monotonic()
                if left <= 0:
                    raise CDPError(f"no {method} event within {timeout} s")
                self._lock.wait(left)

    def new_page(self, fresh: bool = False) -> Session:
        """A new tab; fresh: in a browser context of its own, whose storage (service workers,
        caches, IndexedDB) starts empty as a new profile's would: a first visit."""
        params: dict[str, Any] = {"url": "about:blank"}
        if fresh:
            params["browserContextId"] = self.send("Target.createBrowserContext")[
                "browserContextId"
            ]
        target = self.send("Target.createTarget", params)["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})
        return Session(self, session["sessionId"], target)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.send("Browser.close", timeout=5)
        with contextlib.suppress(Exception):
            self.ws.close()
        if self.proc.poll() is None:
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._log.close()
