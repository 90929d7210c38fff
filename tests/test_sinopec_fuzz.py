"""Fuzz: random and mutated byte streams into SinopecPoller never raise, never forge a Sale.

Each example runs a few request turns against one pump. The "pump" answers
with a stream of segments: random noise, and good answer frames (records,
reports, reads) either intact or hit by ONE fault each. The faults are the
ones CRC-16/ARC plus the framing are proven to catch, so a Sale the pump did
not send can only come from a bug, never from luck:

- one bit flipped, or one byte replaced by any value: a single error burst
  of at most 8 bits in the frame's body (CRC-16 catches every burst ≤ 16
  bits), or a lone FA created / destroyed (the framer reports ``truncated``
  or loses the frame start);
- one byte dropped, or the frame cut short, when what follows is the next
  frame or the end of the answer: the shortened frame runs into the next
  frame's lone FA (``truncated``) or is dropped at the deadline. Not when
  the shortened frame ends in the first half of an ``FA FA`` pair — that
  FA would pair with the next frame's start and the CRC would be all that
  is left (2⁻¹⁶), so such a drop / cut is left out;
- the right frame with the wrong frame number or source (``unexpected``);
- a frame repeated.

Noise is arbitrary (it may hold FA FA pairs and bogus frame starts); forging
a good frame from it takes a matching header and a CRC collision.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.events import Event, ProtocolError, Sale
from protocols.sinopec.driver import SinopecPoller
from protocols.sinopec.extensions import (
    InfoReading,
    TotalsReading,
    build_errors,
    build_info,
    build_totals,
)
from protocols.sinopec.framer import SYNC, Frame, FrameDecoder, encode_frame
from protocols.sinopec.messages import (
    ST_IDLE,
    ST_NOZZLE,
    RealtimeEntry,
    TransactionRecord,
    build_realtime,
    build_record,
    sale_event,
)

MASTER, PUMP = 0xE0, 1


def record(pos_ttc: int, nzn: int, v_tot: int, t_mac: bytes) -> bytes:
    return build_record(
        TransactionRecord(
            pos_ttc=pos_ttc,
            time=datetime(2026, 11, 22, 8, 15, pos_ttc % 60),
            nzn=nzn,
            g_code="1095",
            vol=2000 + pos_ttc,
            prc=836,
            amn=16720,
            v_tot=v_tot,
            t_mac=t_mac,
        )
    )


#: What the pump may answer. Records with FA bytes inside (escapes on the wire).
RECORDS = [
    record(1000, 1, 10_000_000, bytes(4)),
    record(1001, 2, 0xFAFAFAFA, b"\xfa\x00\xfa\xfa"),
    record(0xFA, 0xFA, 250, b"\xfa" * 4),
    record(1003, 3, 12_345_678, b"\x00\xfa\x01\x02"),
]
PAYLOADS = [
    *RECORDS,
    build_realtime(
        [RealtimeEntry(ST_IDLE, 1), RealtimeEntry(ST_NOZZLE, 2, amn=9, vol=12, prc=752)]
    ),
    build_totals(TotalsReading(1, 0xFA00FA, 8)),
    build_info(InfoReading(0, {"mcu_id": "M-1", "encoder_id": "E\x7e"})),
    build_errors([(0, 64), (1, 61)]),
]
SENT = {record_data: sale_event(record_data, PUMP) for record_data in RECORDS}


def ends_in_half_pair(wire: bytes) -> bool:
    """True when ``wire`` ends with an odd run of FA (a lone FA at the end)."""
    run = len(wire) - len(wire.rstrip(b"\xfa"))
    return run % 2 == 1


def mutate(wire: bytes, fault: tuple[str, int, int], next_is_noise: bool) -> bytes:
    kind, pos, value = fault
    pos %= len(wire)
    if kind == "flip":
        return wire[:pos] + bytes([wire[pos] ^ (1 << (value % 8))]) + wire[pos + 1 :]
    if kind == "replace":
        return wire[:pos] + bytes([value % 256]) + wire[pos + 1 :]
    if kind == "repeat":
        return wire + wire
    shorter = wire[:pos] + wire[pos + 1 :] if kind == "drop" else wire[: max(1, pos)]
    if next_is_noise or ends_in_half_pair(shorter):
        return wire  # not a fault the framing is bound to catch (module doc)
    return shorter


class Blob:
    """Reads a plan out of one byte string (cheap to generate, still shrinkable)."""

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def take(self, n: int) -> bytes:
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out.ljust(n, b"\x00")

    def byte(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        return int.from_bytes(self.take(2), "big")


HOW = ("answer", "answer", "answer", "late", "stranger")
FAULTS = (None, None, "flip", "replace", "drop", "cut", "repeat")

Segment = tuple[str, object]
Turn = tuple[list[Segment], list[int], bool]


def plan_of(data: bytes) -> list[Turn]:
    """1–5 turns: each up to 4 segments (noise, or a frame with at most one
    fault), up to 3 read boundaries, and whether to commit its sales."""
    blob = Blob(data)
    plan = []
    for _ in range(1 + blob.byte() % 5):
        segs: list[Segment] = []
        for _ in range(blob.byte() % 5):
            if blob.byte() % 4 == 3:  # a zero byte (hypothesis's favourite) is a frame
                segs.append(("noise", blob.take(1 + blob.byte() % 48)))
                continue
            index, how = blob.byte() % len(PAYLOADS), HOW[blob.byte() % len(HOW)]
            kind = FAULTS[blob.byte() % len(FAULTS)]
            fault = None if kind is None else (kind, blob.u16(), blob.byte())
            segs.append(("frame", (index, how, fault)))
        cuts = [blob.u16() for _ in range(blob.byte() % 4)]
        plan.append((segs, cuts, bool(blob.byte() & 1)))
    return plan


def answer_wire(request: Frame, payload: bytes, how: str) -> bytes:
    return _answer_wire(request.ctrl, payload, how)


@functools.cache
def _answer_wire(request_ctrl: int, payload: bytes, how: str) -> bytes:
    """The pump's frame (a few hundred distinct ones: cached, the fuzz is hot)."""
    frame_no = ((request_ctrl & 0x3F) + (how == "late")) & 0x3F
    src = 2 if how == "stranger" else PUMP
    ctrl = frame_no | ((request_ctrl & 0x40) ^ 0x40)
    return encode_frame(Frame(dst=MASTER, src=src, ctrl=ctrl, data=payload))


@functools.cache
def request_of(wire: bytes) -> Frame:
    (request,) = FrameDecoder().receive_data(wire)
    assert isinstance(request, Frame) and (request.src, request.dst) == (MASTER, PUMP)
    return request


def stream(request: Frame, plan: Sequence[Segment]) -> bytes:
    out = bytearray()
    for i, (kind, arg) in enumerate(plan):
        if kind == "noise":
            assert isinstance(arg, bytes)
            out += arg
            continue
        assert isinstance(arg, tuple)
        index, how, fault = arg
        wire = answer_wire(request, PAYLOADS[index], how)
        next_is_noise = i + 1 < len(plan) and plan[i + 1][0] == "noise"
        out += wire if fault is None else mutate(wire, fault, next_is_noise)
    return bytes(out)


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


@settings(max_examples=35_000, deadline=None)
@given(st.binary(max_size=600))
def test_random_and_mutated_streams_never_raise_nor_forge_a_sale(data: bytes) -> None:
    plan = plan_of(data)
    driver = SinopecPoller([PUMP], master_address=MASTER)
    for segs, cuts, commit in plan:
        wire = driver.next_request()
        assert wire is not None
        request = request_of(wire)
        events: list[Event] = []
        for chunk in split(stream(request, segs), cuts):
            events += driver.receive_data(chunk)
        events += driver.response_timeout()
        assert not driver.awaiting_response
        for event in events:
            if isinstance(event, Sale):
                assert event.raw and SENT.get(b"\x32" + event.raw) == event, event
                if commit:
                    driver.sale_committed(event)
            else:
                assert not isinstance(event, ProtocolError) or event.kind in {
                    "garbage", "bad_crc", "bad_length", "truncated", "bad_message",
                    "unexpected", "timeout",
                }  # fmt: skip


def test_the_excluded_case_is_real() -> None:
    """Why a drop / cut ending in half an FA pair is left out: the next frame's
    start pairs with it, the cut frame swallows the next one and only the CRC
    (2⁻¹⁶) stands between us and a wrong frame."""
    wire = answer_wire(Frame(PUMP, MASTER, 0x40, b"\x30"), RECORDS[2], "answer")
    cut = wire[: wire.rindex(b"\xfa\xfa") + 1]
    assert ends_in_half_pair(cut) and cut[-1] == SYNC
    decoder = FrameDecoder()
    out = decoder.receive_data(cut + wire) + decoder.flush()
    kinds = [x.kind if isinstance(x, ProtocolError) else "frame" for x in out]
    assert kinds[0] == "bad_crc", kinds  # not "truncated": the framing saw nothing wrong


def test_plan_of_reads_what_it_says() -> None:
    assert plan_of(b"") == [([], [], False)]  # bytes past the end read as 0
    data = bytes([1, 2, 3, 5, *range(0xAA, 0xB0), 1, 0, 3, 4, 0, 9, 7, 1, 0x01, 0x02, 1, 1])
    assert plan_of(data) == [
        (
            [("noise", bytes(range(0xAA, 0xB0))), ("frame", (0, "late", ("drop", 9, 7)))],
            [0x0102],
            True,
        ),
        ([("frame", (0, "answer", None))], [], False),
    ]
