"""Windows: which segments are acceptable, which ACKs are believable, what window to advertise.

Pure functions of sequence numbers, shared by connection.py and tested table by table.
"""

from __future__ import annotations

from summon.net.tcp.seq import MASK, seq_in, seq_le, seq_lt
from summon.net.tcp.wire import MAX_WSCALE


def acceptable(seq: int, length: int, rcv_nxt: int, rcv_wnd: int) -> bool:
    """RFC 9293 section 3.10.7.4's test: does any of the segment fall inside the window?

    SEG.LEN  RCV.WND  acceptable when
    0        0        SEG.SEQ = RCV.NXT
    0        >0       RCV.NXT =< SEG.SEQ < RCV.NXT+RCV.WND
    >0       0        never
    >0       >0       its first or its last byte lies in the window
    """
    if length == 0:
        return seq == rcv_nxt if rcv_wnd == 0 else seq_in(seq, rcv_nxt, rcv_wnd)
    if rcv_wnd == 0:
        return False
    return seq_in(seq, rcv_nxt, rcv_wnd) or seq_in((seq + length - 1) & MASK, rcv_nxt, rcv_wnd)


def ack_in_range(ack: int, snd_una: int, snd_max: int, max_snd_wnd: int) -> bool:
    """RFC 5961 section 5.2: SND.UNA - MAX.SND.WND =< SEG.ACK =< SND.NXT (we use the highest
    sequence number sent). Outside it the segment is dropped with a challenge ACK, which stops
    blind data injection: the attacker must guess the ACK too, not only an in-window SEQ."""
    return seq_le(ack, snd_max) and not seq_lt(ack, (snd_una - max_snd_wnd) & MASK)


def rst_action(seq: int, rcv_nxt: int, rcv_wnd: int) -> str:
    """RFC 5961 section 3.2 for an RST in a synchronized state:
    "reset" if SEG.SEQ = RCV.NXT exactly, "challenge" if elsewhere in the window, "drop" if not.
    """
    if seq == rcv_nxt:
        return "reset"
    if seq_in(seq, rcv_nxt, max(rcv_wnd, 1)):
        return "challenge"
    return "drop"


def scale_for(buffer: int) -> int:
    """The smallest window-scale shift that lets a 16-bit field describe `buffer` bytes."""
    shift = 0
    while (buffer >> shift) > 0xFFFF and shift < MAX_WSCALE:
        shift += 1
    return shift


def advertise(
    free: int, rcv_nxt: int, rcv_adv: int, shift: int, mss: int, buffer: int
) -> tuple[int, int]:
    """The window field to send and the new right edge RCV.NXT + window, given `free` bytes.

    Receiver-side silly window avoidance (RFC 9293 section 3.8.6.2.2): the right edge moves only
    by at least min(buffer / 2, MSS); and it never moves left (a promise once made is kept),
    unless the stack-wide receive budget took the space it promised: then the window shrinks
    to what is free (or to zero, if that is less than the step above), as Linux does under
    memory pressure with tcp_shrink_window=1, rather than invite bytes it would drop.
    """
    promised = (rcv_adv - rcv_nxt) & MASK
    if promised > free:
        window = free if free >= min(buffer // 2, mss) else 0
        field = min(window >> shift, 0xFFFF)
        return field, (rcv_nxt + (field << shift)) & MASK
    if free - promised >= min(buffer // 2, mss) or free == buffer:
        window = free
    else:
        window = promised
    field = min(window >> shift, 0xFFFF)
    right = (rcv_nxt + (field << shift)) & MASK
    if seq_lt(right, rcv_adv):
        # rounding by the shift pulled the edge left of the promise; round up if space allows
        up = min((promised + (1 << shift) - 1) >> shift, 0xFFFF)
        if up << shift <= free:
            field = up
            right = (rcv_nxt + (field << shift)) & MASK
    return field, right
