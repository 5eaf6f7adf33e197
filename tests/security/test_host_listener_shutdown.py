"""An app handed the host's listening socket cannot stop it, nor take the socket elsewhere.

Rule (seccomp.shutdown_rules, gate.RULE_SHUTDOWN): a listening socket is one socket for every
holder. An app handed the host's listener (`summon run -p`, a gateway's shared listener) that
called shutdown(SHUT_RD) on its copy stopped it for summon and the gateway too, and gave its
port back; listen() again then took a random port of the host on the listener's address, a
listener of the host's network namespace outside every published port (with bind in its
profile, any free address and port). Now such an app shuts sockets down for writing only
(SHUT_WR, the half-close the runtime's server makes): anything else is refused by the gate
with a line naming the rule, and the listener is the host's as before. The app's other
sockets shut down for reading as on any host (the gate makes the call for it).
"""

from __future__ import annotations

import socket

import pytest
from hostile_apps import ATTEMPT, needs_sandbox
from sealed_image import Run, SealedImage, make_sealed_image

from summon.targets.base import PortForward
from summon.targets.sandbox import gate, seccomp

pytestmark = needs_sandbox

APP = r"""
import json, socket
from summon.devices import Stack


# attempt(): hostile_apps.ATTEMPT


async def main(stack: Stack) -> int:
    server = await stack.start_server(lambda reader, writer: writer.close(), 8000)
    listener = socket.socket(fileno=3)  # LISTEN_FDS: the host's listener, handed over
    a, b = socket.socketpair()
    attempt("shut_wr_of_a_pair", lambda: a.shutdown(socket.SHUT_WR))
    # The app's own sockets shut down as they like (redis-py's SHUT_RDWR at disconnect).
    c, d = socket.socketpair()
    attempt("shut_rdwr_of_a_pair", lambda: c.shutdown(socket.SHUT_RDWR))
    d.settimeout(5)
    attempt("peer_sees_the_end", lambda: d.recv(1))
    attempt("shut_rd_of_a_pair", lambda: b.shutdown(socket.SHUT_RD))
    unconnected = socket.socket()
    attempt("shut_rd_unconnected", lambda: unconnected.shutdown(socket.SHUT_RD))
    attempt("shut_rd_of_the_listener", lambda: listener.shutdown(socket.SHUT_RD))
    attempt("shut_rdwr_of_the_listener", lambda: listener.shutdown(socket.SHUT_RDWR))
    attempt("still_listening", lambda: listener.getsockopt(socket.SOL_SOCKET,
                                                             socket.SO_ACCEPTCONN))
    attempt("address", lambda: listener.getsockname()[1])

    def loop():  # each one is the gate's work, outside the instance's cgroup
        for _ in range(1100):
            b.shutdown(socket.SHUT_RD)
        return "done"

    attempt("a_loop_of_shutdowns", loop)
    listener.detach()
    server.close()
    return 0
"""
APP = APP.replace("# attempt(): hostile_apps.ATTEMPT\n", ATTEMPT)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def handed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Run, int]:
    image: SealedImage = make_sealed_image(tmp_path_factory.mktemp("listener"))
    # A derived profile without connect: the app is handed the host's listener.
    every = (*seccomp.allowed_syscalls("socket"), *seccomp.RECORDABLE_CONDITIONAL)
    allowed = tuple(n for n in every if n != "connect")
    port = _free_port()
    app = image.app_json("app:main", seal={"mode": "off"})
    run = image.run({"app.py": APP}, app, syscalls=allowed, ports=(PortForward(port, 8000),))
    return run, port


def test_a_half_close_for_writing_goes_through(handed: tuple[Run, int]) -> None:
    run, _ = handed
    assert run.results["shut_wr_of_a_pair"]["ok"], run.output


def test_the_app_s_own_sockets_shut_down_for_reading(handed: tuple[Run, int]) -> None:
    """Not a listener: the gate makes the call on the app's own socket (taken with
    pidfd_getfd, so no other thread can swap the listener in) and answers as the kernel."""
    run, _ = handed
    for probe in ("shut_rdwr_of_a_pair", "shut_rd_of_a_pair"):
        assert run.results[probe]["ok"], run.output
    assert run.results["peer_sees_the_end"] == {
        "probe": "peer_sees_the_end", "ok": True, "detail": "b''"
    }, run.output  # fmt: skip
    unconnected = run.results["shut_rd_unconnected"]
    assert (unconnected["ok"], unconnected.get("kind")) == (False, "OSError"), run.output
    assert "not connected" in unconnected["detail"], run.output


def test_a_loop_of_shutdowns_made_for_the_app_is_paced(handed: tuple[Run, int]) -> None:
    """Rule gate.RULE_PACE: the gate makes each call in summon's monitor, so past 1000 a
    second the app's next ones wait, as refusals do; said once."""
    run, _ = handed
    assert run.results["a_loop_of_shutdowns"]["ok"], run.output
    said = [line for line in run.output.splitlines() if gate.RULE_PACE in line]
    assert said == [f"summon: sandbox: refused a flood of gated calls ({gate.RULE_PACE})"]


@pytest.mark.parametrize("probe", ["shut_rd_of_the_listener", "shut_rdwr_of_the_listener"])
def test_shutting_the_host_s_listener_down_is_refused(handed: tuple[Run, int], probe: str) -> None:
    run, _ = handed
    got = run.results[probe]
    assert (got["ok"], got.get("kind")) == (False, "PermissionError"), run.output
    said = run.lines("summon: sandbox: refused shutdown()")
    assert said == [
        "summon: sandbox: refused shutdown() of a listening socket for reading "
        f"({gate.RULE_SHUTDOWN})"
    ], run.output


def test_the_listener_stays_the_host_s(handed: tuple[Run, int]) -> None:
    run, port = handed
    assert run.results["still_listening"] == {
        "probe": "still_listening", "ok": True, "detail": "1"
    }, run.output  # fmt: skip
    assert run.results["address"]["detail"] == repr(port), run.output
