"""An instance's blocking calls, made off the gateway's event loop.

Target.start, Instance.stop and Instance.wait block; the gateway's loop must not. A wait
may last as long as the instance (hours): it gets a thread of its own rather than one of
the loop's few default workers, which every boot needs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading

from summon.instances import scratch
from summon.targets.base import Instance

TYPE_CHECKING = False
if TYPE_CHECKING:
    from summon.gateway.launched import Launched

log = logging.getLogger("summon.gateway.service")

STOP_GRACE = 2.0


def exited(instance: Instance, patience: float) -> int | None:
    """The app's exit status if it ended (waiting up to patience seconds), else None."""
    try:
        return instance.wait(patience)
    except Exception:  # a wait that fails says nothing of the app: as if still running
        return None


def exit_text(instance: Instance, status: int | None, last_line: str) -> str:
    """ "app exited with status N: why": the target's reason (an OOM kill, with the limit),
    else the console's last line; SIGKILL leaves no last words, so that line is unrelated."""
    why = ""
    with contextlib.suppress(Exception):
        why = instance.exit_reason()
    if not why:
        killed = status in (137, -9)
        why = "killed by SIGKILL (out of memory, or a kill from outside)" if killed else last_line
    return f"app exited with status {status}" + (f": {why}" if why else "")


def stop_quietly(instance: Instance, thaw: bool = False) -> None:
    try:
        if thaw:
            instance.thaw()  # a frozen app could not act on the stop
        instance.stop(STOP_GRACE)
    except Exception as e:  # a stop that fails must not take the gateway down
        log.warning("stopping instance: %s", e)
    else:
        scratch.release_for(instance)  # stopped: no leftover for a later gateway to release


def waited(instance: Instance) -> asyncio.Future[int | None]:
    """instance.wait() on a thread of its own, its result on the loop.

    Not the loop's default executor: its few workers would all be taken by instances that
    run for hours, and every boot (Target.start runs there too) would wait behind them.
    """
    loop = asyncio.get_running_loop()
    done: asyncio.Future[int | None] = loop.create_future()

    def settle(status: int | None, error: BaseException | None) -> None:
        if done.done():
            return
        if error is not None:
            done.set_exception(error)
        else:
            done.set_result(status)

    def wait() -> None:
        status: int | None = None
        error: BaseException | None = None
        try:
            status = instance.wait()
        except BaseException as e:  # handed to the loop, which decides
            error = e
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            loop.call_soon_threadsafe(settle, status, error)

    threading.Thread(target=wait, name="summon-gw-wait", daemon=True).start()
    return done


def stop_late(future: asyncio.Future[Launched | Instance]) -> None:
    """A done callback for a start that came too late: stop what it started."""
    # A done callback runs on the event loop: the (blocking) stop goes to a thread of its own.
    if not future.cancelled() and future.exception() is None:
        result = future.result()
        instance = getattr(result, "instance", result)  # a Launched, or the Instance itself
        channel = getattr(result, "channel", None)
        if channel is not None:
            channel.close()
        threading.Thread(target=stop_quietly, args=(instance,), daemon=True).start()
