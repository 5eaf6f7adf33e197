"""What one call on a Connection or Listener asks of whoever drives it: the effects record.

h11's rule applied to TCP: the protocol objects do no I/O and hold no reference to the layer
that drives them. A call (a segment, a timer, an app's send) changes the connection's state
and leaves what must happen outside it here; the caller (TCP in layer.py, or a test) drains
the record after each call and clears it:

    segments     to send to the connection's peer, in order: encoded TCP segments, their
                 checksum over the connection's address pair, ready for IPv4
    replies      (to_ip, segment) a listener answers with (RSTs, SYN cookies)
    counts       counter names to increment, one per unit that took the path
    ready        the app has news (events to read, send space freed, a connection to accept)
    established  a passive connection finished its handshake: into its listener's accept queue
    closed       the connection reached CLOSED: forget its 4-tuple (and its SYN-queue slot)
    rearmed      its timers changed: `deadline` is now its earliest one (or None)
    starved      it advertised a zero window because the stack-wide receive budget was
                 spent: tell it when an app's read gives the budget room again

A record is reused for every call: nothing is allocated per segment beyond the segments
themselves. A connection made alone has its own; TCP gives all of its connections one record
(its listeners one each), which it drains right after every call, so a record never holds the
effects of two connections and an idle connection costs no record.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from summon.net.tcp.segment import Segment


class Effects:
    """The effects of the calls since the record was last drained (see the module doc)."""

    __slots__ = (
        "closed",
        "counts",
        "deadline",
        "established",
        "ready",
        "rearmed",
        "replies",
        "segments",
        "starved",
    )

    def __init__(self) -> None:
        self.segments: list[bytes] = []
        self.replies: list[tuple[bytes, Segment]] = []
        self.counts: list[str] = []
        self.ready = False
        self.established = False
        self.closed = False
        self.rearmed = False
        self.starved = False
        self.deadline: float | None = None

    def clear(self) -> None:
        """Forget everything recorded (after draining it)."""
        self.segments.clear()
        self.replies.clear()
        self.counts.clear()
        self.ready = self.established = self.closed = self.rearmed = self.starved = False

    def __bool__(self) -> bool:
        return bool(
            self.segments
            or self.replies
            or self.counts
            or self.ready
            or self.established
            or self.closed
            or self.rearmed
            or self.starved
        )

    def __repr__(self) -> str:
        parts = [f"segments={self.segments!r}"] if self.segments else []
        if self.replies:
            parts.append(f"replies={self.replies!r}")
        if self.counts:
            parts.append(f"counts={self.counts!r}")
        names = ("ready", "established", "closed", "starved")
        parts += [name for name in names if getattr(self, name)]
        if self.rearmed:
            parts.append(f"deadline={self.deadline!r}")
        return f"<Effects {' '.join(parts) or 'none'}>"
