"""SinopecResponder: simulated Sinopec pumps over PumpModel, several per bus."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

import pytest

from hil.dispenser.model import PumpModel
from hil.dispenser.responder import UnknownResponder, load_responder, simulated
from hil.dispenser.sinopec import SinopecResponder
from protocols.sinopec.extensions import (
    InfoReading,
    TotalsReading,
    build_errors,
    build_info,
    build_totals,
)
from protocols.sinopec.framer import Frame, FrameDecoder, encode_frame
from protocols.sinopec.messages import (
    ST_IDLE,
    ST_NOZZLE,
    RealtimeEntry,
    TransactionRecord,
    build_realtime,
    parse_record,
)

MASTER = 0xE0
ENDED = datetime(2026, 11, 22, 8, 15, 2, tzinfo=timezone(timedelta(hours=8)))


def bus(addresses: tuple[int, ...] = (1, 2), nozzles: int = 2) -> SinopecResponder:
    rng = random.Random(3)
    return SinopecResponder([PumpModel.create(a, nozzles, rng) for a in addresses])


def ask(responder: SinopecResponder, dst: int, data: bytes, now: float = 0.0) -> list[Frame]:
    wire = encode_frame(Frame(dst=dst, src=MASTER, ctrl=0x45, data=data))
    frames = FrameDecoder().receive_data(responder.receive_data(wire, now))
    assert all(isinstance(f, Frame) for f in frames)
    return [f for f in frames if isinstance(f, Frame)]


def test_registry() -> None:
    assert load_responder("sinopec") is SinopecResponder
    assert {"sinopec", "dart", "gilbarco"} <= set(simulated())  # named by each descriptor
    assert SinopecResponder.protocol == "sinopec" and SinopecResponder.AMOUNT_TOTALIZER is False
    with pytest.raises(UnknownResponder):
        load_responder("tokheim")


def test_each_pump_answers_its_own_address_only() -> None:
    responder = bus()
    (one,) = ask(responder, 1, b"\x30")
    (two,) = ask(responder, 2, b"\x30")
    assert (one.src, one.dst, one.ctrl) == (1, MASTER, 0x05)  # frame number, caller bit off
    assert two.src == 2
    assert ask(responder, 3, b"\x30") == []
    idle = build_realtime([RealtimeEntry(ST_IDLE, 1), RealtimeEntry(ST_IDLE, 2)])
    assert one.data == two.data == idle


def test_live_fill_then_pending_record_until_confirmed() -> None:
    responder = bus()
    pump = responder.pumps[2]
    nozzle = pump.nozzle(2)
    pump.lift(nozzle, 4000)
    (frame,) = ask(responder, 2, b"\x30")
    assert frame.data == build_realtime(
        [RealtimeEntry(ST_IDLE, 1), RealtimeEntry(ST_NOZZLE, 2, prc=nozzle.price)]
    )
    pump.start_fuel(nozzle, 10.0, 2.0)
    (frame,) = ask(responder, 2, b"\x30", now=11.0)
    amn = (nozzle.price * 2000 + 50) // 100  # half of 40.00 L, rounded half up
    assert frame.data == build_realtime(
        [
            RealtimeEntry(ST_IDLE, 1),
            RealtimeEntry(ST_NOZZLE, 2, amn=amn, vol=2000, prc=nozzle.price),
        ]
    )
    sale = pump.hang_up(nozzle, ENDED)
    for _ in range(2):  # offered until confirmed
        (frame,) = ask(responder, 2, b"\x30")
        assert parse_record(frame.data) == TransactionRecord(
            pos_ttc=sale.txn_no,
            time=datetime(2026, 11, 22, 8, 15, 2),
            nzn=2,
            g_code=sale.grade,
            vol=4000,
            prc=sale.price,
            amn=sale.amount,
            v_tot=sale.totalizer_volume_end,
        )
    # The old 32-shaped confirmation is not understood: silence, still pending.
    assert ask(responder, 2, b"\x32" + sale.txn_no.to_bytes(4, "big")) == []
    assert responder.ignored == 1 and len(pump.pending) == 1
    (frame,) = ask(responder, 2, b"\x3c" + sale.txn_no.to_bytes(4, "big"))
    assert frame.command == 0x31 and not pump.pending and pump.taken == 1


def test_reads_and_silence() -> None:
    responder = bus(addresses=(5,), nozzles=2)
    pump = responder.pumps[5]
    pump.raise_alarm(64)
    pump.raise_alarm(61)
    n2 = pump.nozzle(2)
    answers = {q: ask(responder, 5, bytes.fromhex(q)) for q in ("3802", "3a00", "3a01", "3b")}
    assert answers["3802"][0].data == build_totals(
        TotalsReading(2, n2.totalizer_volume, n2.totalizer_amount)
    )
    parts = {k: pump.components[k] for k in ("mainboard_id", "mcu_id", "encoder_id", "safety_id")}
    assert answers["3a00"][0].data == build_info(InfoReading(0, parts))
    uid = pump.nozzle(1).uid
    assert answers["3a01"][0].data == build_info(InfoReading(1, {"nozzle_uid": uid}))
    assert answers["3b"][0].data == build_errors([(0, 61), (0, 64)])
    for silent in ("3803", "3a09", "3800", "33", "3000", "3c00"):
        assert ask(responder, 5, bytes.fromhex(silent)) == [], silent


def test_powered_off_pump_is_silent() -> None:
    responder = bus()
    responder.pumps[1].silent_until = 5.0
    assert ask(responder, 1, b"\x30", now=4.9) == []
    assert len(ask(responder, 2, b"\x30", now=4.9)) == 1
    assert len(ask(responder, 1, b"\x30", now=5.0)) == 1


def test_refuses_pumps_it_cannot_carry() -> None:
    rng = random.Random(1)
    with pytest.raises(ValueError):
        SinopecResponder([PumpModel.create(1, 2, rng), PumpModel.create(1, 2, rng)])
    with pytest.raises(ValueError):
        SinopecResponder([PumpModel.create(0xE0, 2, rng)])
    with pytest.raises(ValueError):
        SinopecResponder([PumpModel.create(1, 17, rng)])
