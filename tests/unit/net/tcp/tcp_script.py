"""A small packetdrill-style runner: a script drives one TCP endpoint on virtual time.

One line per step, in time order; `//` starts a comment. Time is absolute (`0.100`) or relative
to the previous line (`+0.2`). Before a line runs, time advances to it, firing due timers.

    0.000 listen                       the endpoint listens on port 8080
    0.000 < S 0:0(0) win 65535 <mss 1460,wscale 7>
    0.000 > S. 0:0(0) ack 1 win 65535 <mss 1460,wscale 3>
    0.010 < . 1:1(0) ack 1 win 512
    0.010 accept                       take the connection from the listener
    0.010 write 1000                   send() 1000 bytes; `write 5000 -> 4096` if fewer fit
    0.010 > P. 1:1001(1000) ack 1
    0.020 read 300                     DataReceived events must hold exactly 300 bytes
    0.020 event EndOfStream            the next non-data event (`event none`: nothing pending)
    0.020 state CLOSE_WAIT
    0.020 counter tcp__challenge_ack 1
    0.020 close / abort / connect / config key=value ...

`<` lines are injected into the endpoint from the peer (192.0.2.2:40000). `>` lines must match
the endpoint's next output: flags, sequence range, ack (when given or when "." is in the flags),
window (when given), options (when given; `<>` means none); the output must have been sent
within `tolerance` seconds of the line's time. Any output not matched by the time the next
non-`>` line runs (or the script ends) is an error, as in packetdrill.

Sequence numbers are relative: `<` lines count from the peer's ISN (REMOTE_ISN, near the top
of the 32-bit space so every script also exercises wraparound) and ack from the endpoint's ISN
(absolute until the endpoint has sent a SYN); `>` lines the other way round.
Flags: S F R P . (ACK); `bad_csum` after a `<` segment spoils its checksum.
"""

from __future__ import annotations

import ast
import random
import re
from dataclasses import dataclass, field

from summon.net.tcp import (
    TCP,
    Connection,
    DataReceived,
    Event,
    Listener,
    Segment,
    TCPConfig,
    parse_segment,
)
from summon.net.tcp.wire import ACK, FIN, PSH, RST, SYN

LOCAL_IP = bytes((192, 0, 2, 1))  # TEST-NET-1 (RFC 5737); nothing here leaves the process
REMOTE_IP = bytes((192, 0, 2, 2))
LOCAL_PORT = 8080
REMOTE_PORT = 40000
REMOTE_ISN = 0xFFFFFF00
MASK = 0xFFFFFFFF

_FLAGS = {"S": SYN, "F": FIN, "R": RST, "P": PSH, ".": ACK}
_SEGMENT = re.compile(
    r"^(?P<flags>[SFRP.]+)\s+(?P<start>\d+):(?P<end>\d+)\((?P<len>\d+)\)"
    r"(?:\s+ack\s+(?P<ack>\d+))?(?:\s+win\s+(?P<win>\d+))?"
    r"(?:\s+<(?P<opts>[^>]*)>)?(?P<bad>\s+bad_csum)?\s*$"
)


class ScriptError(AssertionError):
    pass


@dataclass
class Options:
    mss: int | None = None
    wscale: int | None = None
    sack_permitted: bool = False
    timestamp: tuple[int, int] | None = None


def parse_options(text: str) -> Options:
    opts = Options()
    for item in (part.strip() for part in text.split(",")):
        if not item or item == "nop":
            continue
        words = item.split()
        if words[0] == "mss":
            opts.mss = int(words[1])
        elif words[0] == "wscale":
            opts.wscale = int(words[1])
        elif words[0] == "sackOK":
            opts.sack_permitted = True
        elif words[0] == "TS":  # TS val N ecr M
            opts.timestamp = (int(words[2]), int(words[4]))
        else:
            raise ScriptError(f"unknown option {item!r}")
    return opts


@dataclass
class SegmentLine:
    flags: int
    start: int
    end: int
    length: int
    ack: int | None
    window: int | None
    options: Options | None
    bad_checksum: bool


def parse_segment_line(text: str) -> SegmentLine:
    m = _SEGMENT.match(text.strip())
    if m is None:
        raise ScriptError(f"cannot read segment {text!r}")
    flags = 0
    for letter in m["flags"]:
        flags |= _FLAGS[letter]
    start, end, length = int(m["start"]), int(m["end"]), int(m["len"])
    if (end - start) & MASK != length:
        raise ScriptError(f"{start}:{end} is not {length} bytes long")
    return SegmentLine(
        flags,
        start,
        end,
        length,
        int(m["ack"]) if m["ack"] is not None else None,
        int(m["win"]) if m["win"] is not None else None,
        parse_options(m["opts"]) if m["opts"] is not None else None,
        m["bad"] is not None,
    )


@dataclass
class Endpoint:
    """The endpoint under test and what it has sent: (time, Segment)."""

    config: TCPConfig
    seed: int = 0
    now: float = 0.0
    sent: list[tuple[float, Segment]] = field(default_factory=list)
    tcp: TCP = field(init=False)

    def __post_init__(self) -> None:
        rng = random.Random(self.seed)
        self.tcp = TCP(
            LOCAL_IP,
            self._send_ip,
            config=self.config,
            clock=lambda: self.now,
            random_bytes=rng.randbytes,
        )

    def _send_ip(self, proto: int, dst: bytes, payload: bytes) -> None:
        assert proto == 6 and dst == REMOTE_IP
        # What goes out must itself parse: the endpoint's encoder checked by our parser.
        self.sent.append((self.now, parse_segment(LOCAL_IP, REMOTE_IP, payload)))

    def advance(self, until: float) -> None:
        while True:
            deadline = self.tcp.next_deadline()
            if deadline is None or deadline > until + 1e-9:  # float sums: 0.1 + 0.2
                break
            self.now = max(self.now, deadline)
            self.tcp.timers(self.now)
        self.now = max(self.now, until)


class Script:
    """Runs a script; `conn`, `listener`, `endpoint` stay readable for further assertions."""

    def __init__(self, text: str, *, tolerance: float = 0.02, seed: int = 0) -> None:
        self.text = text
        self.tolerance = tolerance
        self.seed = seed
        self.config_args: dict[str, object] = {}
        self.endpoint: Endpoint | None = None
        self.conn: Connection | None = None
        self.listener: Listener | None = None
        self.local_isn: int | None = None
        self.time = 0.0
        self.line_no = 0
        self.line = ""

    # --------------------------------------------------------------- plumbing

    @property
    def ep(self) -> Endpoint:
        if self.endpoint is None:
            self.endpoint = Endpoint(TCPConfig(**self.config_args), self.seed)  # type: ignore[arg-type]
        return self.endpoint

    def fail(self, message: str) -> ScriptError:
        return ScriptError(f"line {self.line_no}: {self.line.strip()!r}: {message}")

    def run(self) -> Script:
        for line_no, raw in enumerate(self.text.splitlines(), 1):
            self.line_no, self.line = line_no, raw
            text = raw.split("//", 1)[0].strip()
            if not text:
                continue
            when, _, rest = text.partition(" ")
            self.time = self.time + float(when[1:]) if when.startswith("+") else float(when)
            rest = rest.strip()
            if rest.startswith(">"):
                self.expect(rest[1:].strip())
                continue
            if rest.startswith("config"):
                self.do_config(rest[len("config") :].strip())
                continue
            self.ep.advance(self.time)
            self.check_nothing_unexpected(before=self.time)
            if rest.startswith("<"):
                self.inject(rest[1:].strip())
            else:
                command, _, args = rest.partition(" ")
                getattr(self, f"do_{command}")(args.strip())
        if self.endpoint is not None:
            self.check_nothing_unexpected(before=float("inf"))
        return self

    def check_nothing_unexpected(self, before: float) -> None:
        if self.endpoint is None:
            return
        late = [(t, seg) for t, seg in self.endpoint.sent if t < before - 1e-9]
        if late:
            t, seg = late[0]
            raise self.fail(f"unexpected segment sent at {t:.3f}: {self.describe(seg)}")

    def describe(self, seg: Segment) -> str:
        """seg in script notation, relative numbers (how a `>` line would spell it)."""
        isn = self.local_isn
        if isn is None:
            isn = seg.seq if seg.flags & SYN else 0
        start = (seg.seq - isn) & MASK
        text = f"{_flag_text(seg.flags)} {start}:{(start + len(seg.payload)) & MASK}"
        text += f"({len(seg.payload)})"
        if seg.flags & ACK:
            text += f" ack {(seg.ack - REMOTE_ISN) & MASK}"
        text += f" win {seg.window}"
        opts = []
        if seg.mss is not None:
            opts.append(f"mss {seg.mss}")
        if seg.wscale is not None:
            opts.append(f"wscale {seg.wscale}")
        if seg.sack_permitted:
            opts.append("sackOK")
        if opts:
            text += " <" + ",".join(opts) + ">"
        return text

    # --------------------------------------------------------------- segments

    def inject(self, text: str) -> None:
        line = parse_segment_line(text)
        opts = line.options or Options()
        ack = 0
        if line.ack is not None:  # before the endpoint's SYN, acks are absolute
            ack = ((self.local_isn or 0) + line.ack) & MASK
        seg = Segment(
            REMOTE_PORT,
            LOCAL_PORT,
            (REMOTE_ISN + line.start) & MASK,
            ack,
            line.flags,
            65535 if line.window is None else line.window,
            bytes(i & 0xFF for i in range(line.length)),
            mss=opts.mss,
            wscale=opts.wscale,
            sack_permitted=opts.sack_permitted,
            timestamp=opts.timestamp,
        )
        data = seg.encode(REMOTE_IP, LOCAL_IP)
        if line.bad_checksum:
            data = data[:16] + bytes((data[16] ^ 0xFF,)) + data[17:]
        self.ep.tcp.receive(REMOTE_IP, LOCAL_IP, data, self.ep.now)

    def expect(self, text: str) -> None:
        ep = self.ep
        ep.advance(self.time)
        if not ep.sent:
            raise self.fail("expected a segment, but nothing was sent")
        sent_at, seg = ep.sent.pop(0)
        if abs(sent_at - self.time) > self.tolerance:
            raise self.fail(
                f"segment sent at {sent_at:.3f}, not {self.time:.3f}: {self.describe(seg)}"
            )
        if self.local_isn is None and seg.flags & SYN:
            self.local_isn = seg.seq
        line = parse_segment_line(text)
        got = self.describe(seg)
        isn = self.local_isn if self.local_isn is not None else 0
        if seg.flags != line.flags:
            raise self.fail(f"flags differ; got {got}")
        if (seg.seq - isn) & MASK != line.start or len(seg.payload) != line.length:
            raise self.fail(f"sequence range differs; got {got}")
        if (line.ack is not None or line.flags & ACK) and (seg.ack - REMOTE_ISN) & MASK != (
            line.ack or 0
        ):
            raise self.fail(f"ack differs; got {got}")
        if line.window is not None and seg.window != line.window:
            raise self.fail(f"window differs; got {got}")
        if line.options is not None:
            opts = line.options
            have = (seg.mss, seg.wscale, seg.sack_permitted, seg.timestamp)
            if have != (opts.mss, opts.wscale, opts.sack_permitted, opts.timestamp):
                raise self.fail(f"options differ; got {got}")

    # --------------------------------------------------------------- commands

    def do_config(self, args: str) -> None:
        if self.endpoint is not None:
            raise self.fail("config must come before anything else")
        for item in args.split():
            key, _, value = item.partition("=")
            self.config_args[key] = ast.literal_eval(value)

    def do_listen(self, args: str) -> None:
        self.listener = self.ep.tcp.listen(int(args) if args else LOCAL_PORT)

    def do_connect(self, args: str) -> None:
        self.conn = self.ep.tcp.connect(REMOTE_IP, REMOTE_PORT, local_port=LOCAL_PORT)

    def do_accept(self, args: str) -> None:
        assert self.listener is not None
        conn = self.listener.accept()
        if conn is None:
            raise self.fail("no connection to accept")
        self.conn = conn

    def connection(self) -> Connection:
        if self.conn is None:
            raise self.fail("no connection")
        return self.conn

    def do_write(self, args: str) -> None:
        size, _, want = args.partition("->")
        n = self.ep.tcp.send(self.connection(), b"d" * int(size))
        expected = int(want) if want.strip() else int(size)
        if n != expected:
            raise self.fail(f"send() took {n} bytes, not {expected}")

    def do_read(self, args: str) -> None:
        want = int(args)
        got = 0
        conn = self.connection()
        while got < want:
            event = self.ep.tcp.next_event(conn, want - got)
            if not isinstance(event, DataReceived):
                raise self.fail(f"read {got} bytes, then {event!r}")
            got += len(event.data)

    def do_event(self, args: str) -> None:
        name, _, reason = args.partition(" ")
        event: Event | None = self.ep.tcp.next_event(self.connection())
        if name == "none":
            if event is not None:
                raise self.fail(f"expected no event, got {event!r}")
            return
        if event is None or type(event).__name__ != name:
            raise self.fail(f"expected {name}, got {event!r}")
        if reason and getattr(event, "reason", None) != reason:
            raise self.fail(f"expected reason {reason}, got {event!r}")

    def do_state(self, args: str) -> None:
        have = self.connection().state
        if have != args:
            raise self.fail(f"state is {have}")

    def do_counter(self, args: str) -> None:
        name, value = args.split()
        have = self.ep.tcp.counters[name]
        if have != int(value):
            raise self.fail(f"counter {name} is {have}, not {value}")

    def do_close(self, args: str) -> None:
        self.ep.tcp.close(self.connection())

    def do_abort(self, args: str) -> None:
        self.ep.tcp.abort(self.connection())

    def do_listener_close(self, args: str) -> None:
        assert self.listener is not None
        self.ep.tcp.unlisten(self.listener)


def _flag_text(flags: int) -> str:
    return "".join(letter for letter, bit in _FLAGS.items() if flags & bit and letter != ".") + (
        "." if flags & ACK else ""
    )


def run_script(text: str, **kwargs: object) -> Script:
    return Script(text, **kwargs).run()  # type: ignore[arg-type]
