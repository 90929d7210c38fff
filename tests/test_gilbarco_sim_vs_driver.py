"""GilbarcoResponder on its own, then against GilbarcoPoller in-process.

No pty: the driver's requests go to the responder through :class:`LineFaults`
(bit errors on the way to the pump) and its replies — the loop's echo of
every command byte, then the reply (protocols.md §4) — back through another,
on a simulated clock, seeded. About 1 % of bytes are hit each way.

Mapping to the ground truth (``SimSale.truth()``): the driver reports
``order_no`` = the volume totalizer after the sale as 8 digits (Gilbarco has
no transaction number), not ``str(txn_no)``; ``grade`` = the nozzle number, not
``SimSale.grade``; ``ended_at`` = when the driver first saw the end (naive),
not the pump's clock. Everything else is compared field by field below.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from hil.dispenser.faults import LineFaults
from hil.dispenser.gilbarco import GilbarcoResponder, order_no_of
from hil.dispenser.model import PumpModel, SimSale
from protocols.events import Event, ProtocolError, PumpLink, Sale
from protocols.gilbarco.codes import status_byte
from protocols.gilbarco.driver import GilbarcoPoller
from protocols.gilbarco.framer import Frame, decode
from protocols.gilbarco.messages import (
    GradeTotals,
    TotalsData,
    TransactionData,
    encode_frame,
    parse_totals,
    parse_transaction,
    running_words,
    totals_body,
    transaction_body,
    words_value,
)

EPOCH = datetime(2026, 5, 1, 8, 0, 0)  # the driver's naive local clock at t = 0
PUMP_CLOCK = datetime(2026, 5, 1, 0, 0, 0, tzinfo=UTC)


def pumps(addresses: tuple[int, ...], nozzles: int, seed: int = 1) -> list[PumpModel]:
    rng = random.Random(seed)
    return [PumpModel.create(address, nozzles, rng) for address in addresses]


def frame(wire: bytes) -> Frame:
    result, consumed = decode(wire)
    assert isinstance(result, Frame) and consumed == len(wire)
    return result


def hundredths(value: int) -> Decimal:
    return Decimal(value).scaleb(-2)


# ---------------------------------------------------------------- responder


def test_responder_echoes_renders_state_and_takes_after_both_reads() -> None:
    (pump,) = pumps((16,), nozzles=2)
    responder = GilbarcoResponder([pump])
    assert responder.protocol == "gilbarco" and responder.AMOUNT_TOTALIZER is True
    ask = responder.receive_data
    assert ask(b"\x00", 0.0) == b"\x00" + bytes([status_byte(0x6, 16)])  # echo; pump 16 is 0
    assert ask(b"\x40", 0.0) == b"\x40"  # nothing sold yet: the echo, then silence
    nozzle = pump.nozzle(2)
    before = (nozzle.totalizer_volume, nozzle.totalizer_amount)
    pump.lift(nozzle, 2000)
    assert ask(b"\x00", 1.0) == b"\x00\x70"  # call
    pump.start_fuel(nozzle, 1.0, seconds=2.0)
    assert ask(b"\x00", 2.0) == b"\x00\x90"  # busy
    live = ask(b"\x60", 2.0)
    assert live[0] == 0x60 and words_value(live[1:]) == nozzle.live_amount(2.0) > 0
    sale = pump.hang_up(nozzle, PUMP_CLOCK)
    assert ask(b"\x00", 3.0) == b"\x00\xa0"  # end of transaction, not collected
    wire = ask(b"\x40", 3.0)[1:]
    assert wire[:3] == b"\xff\xf1\xf8"  # the real header (§4)
    txn = parse_transaction(frame(wire).body)
    assert txn == TransactionData(16, 2, sale.price, 2000, sale.amount)
    assert isinstance(txn, TransactionData)
    tot = parse_totals(frame(ask(b"\x50", 3.0)[1:]).body)
    assert isinstance(tot, TotalsData)
    other = pump.nozzle(1)
    assert tot.grades == (
        GradeTotals(1, other.totalizer_volume, other.totalizer_amount, other.price, other.price),
        GradeTotals(2, before[0] + 2000, before[1] + sale.amount, nozzle.price, nozzle.price),
    )
    assert pump.pending and pump.taken == 0  # both read, but collected only on the next poll
    assert ask(b"\x40", 3.0) == b"\x40" + encode_frame(transaction_body(txn))  # may re-read
    assert ask(b"\x00", 4.0) == b"\x00\xb0"  # collected, still shown
    assert not pump.pending and pump.taken == 1
    assert ask(b"\x40\x50", 4.0) == (
        b"\x40" + encode_frame(transaction_body(txn)) + b"\x50" + encode_frame(totals_body(tot))
    )
    pump.lift(nozzle, 300)
    assert ask(b"\x00", 5.0) == b"\x00\x70"
    pump.hang_up(nozzle, PUMP_CLOCK)
    assert ask(b"\x00", 6.0) == b"\x00\xa0"
    assert ask(b"\x60", 6.0) == b"\x60" + running_words(0)


def test_responder_queue_unknown_pumps_silence_and_no_echo() -> None:
    one, two = pumps((1, 2), nozzles=1)
    responder = GilbarcoResponder([one, two], echo=False)
    nozzle = one.nozzle(1)
    for i in range(2):
        one.lift(nozzle, 1000 + i)
        one.hang_up(nozzle, PUMP_CLOCK)
    # 03: no pump 3; 11, 31: authorise, stop (not implemented); F1, A1: not commands.
    assert responder.receive_data(b"\x01\x02\x03\x11\x31\xf1\xa1", 0.0) == b"\xa1\x62"
    assert responder.receive_data(b"\x41\x51\x01", 0.0)[-1] == 0xA1  # the second sale next
    assert one.taken == 1 and len(one.pending) == 1
    two.silent_until = 10.0
    assert responder.receive_data(b"\x02", 5.0) == b""  # powered off
    responder.echo = True
    assert responder.receive_data(b"\x02", 5.0) == b"\x02"  # the loop still echoes
    with pytest.raises(ValueError):
        GilbarcoResponder([one, one])
    with pytest.raises(ValueError):
        GilbarcoResponder(pumps((17,), nozzles=1))
    with pytest.raises(ValueError):
        GilbarcoResponder(pumps((3,), nozzles=11))


# ---------------------------------------------------------------- sim vs driver

#: Simulated time per request: the request and reply bytes at 5787 baud 8E1
#: (11 bits a byte) plus a 20 ms poll gap; a timeout costs the deadline.
BAUD, BITS_PER_BYTE, POLL_GAP_S, TIMEOUT_S = 5787, 11, 0.020, 0.150
#: Per bit written: about 1 % of bytes hit (8 bits a byte).
BIT_ERROR_RATE = 0.00125


@dataclass
class Session:
    pump: PumpModel
    nozzle: int
    volume: int
    lift_at: float
    fuel_s: float
    hang_up_at: float = 0.0


def plan(models: list[PumpModel], per_pump: int, rng: random.Random) -> list[Session]:
    """Fills one after another on each pump, nozzles round robin, realistic gaps."""
    sessions = []
    for model in models:
        t = rng.uniform(0.0, 2.0)
        for k in range(per_pump):
            fuel_s = rng.uniform(1.0, 4.0)
            nozzle = model.nozzles[k % len(model.nozzles)].nzn
            session = Session(model, nozzle, rng.randint(200, 8000), t, fuel_s)
            session.hang_up_at = t + 0.3 + fuel_s
            sessions.append(session)
            t = session.hang_up_at + rng.uniform(2.0, 6.0)  # the next customer
    return sessions


def check(sale: Sale, sims: dict[tuple[int, int, int], SimSale]) -> SimSale:
    """The Sale equals the SimSale it claims to be, field by field."""
    sim = sims.get((sale.address, sale.nozzle, int(sale.order_no)))
    assert sim is not None, f"a sale the pumps never made: {sale}"
    assert sale.address == sim.address and sale.nozzle == sim.nozzle
    assert sale.grade == str(sim.nozzle)
    assert sale.order_no == order_no_of(sim) == f"{sim.totalizer_volume_end:08d}"
    assert sale.key == f"{sim.nozzle}:{sim.totalizer_volume_end:08d}"
    assert sale.price == hundredths(sim.price)
    assert sale.volume == hundredths(sim.volume)
    assert sale.amount == hundredths(sim.amount)
    assert sale.totalizer_volume_end == hundredths(sim.totalizer_volume_end)
    assert sale.totalizer_amount_end == hundredths(sim.totalizer_amount_end)
    return sim


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_sim_vs_driver_over_a_noisy_line(seed: int) -> None:
    started = time.monotonic()
    rng = random.Random(seed)
    models = [PumpModel.create(a, n, rng) for a, n in ((1, 3), (2, 2), (16, 1))]
    responder = GilbarcoResponder(models)
    to_master = LineFaults(rng=random.Random(seed + 100), bit_error_rate=BIT_ERROR_RATE)
    to_pump = LineFaults(rng=random.Random(seed + 200), bit_error_rate=BIT_ERROR_RATE)
    now = 0.0
    driver = GilbarcoPoller([1, 2, 16], clock=lambda: EPOCH + timedelta(seconds=now))
    sessions = plan(models, per_pump=15, rng=rng)
    actions = sorted(
        [(s.lift_at, 0, i) for i, s in enumerate(sessions)]
        + [(s.lift_at + 0.3, 1, i) for i, s in enumerate(sessions)]
        + [(s.hang_up_at, 2, i) for i, s in enumerate(sessions)]
    )
    sims: dict[tuple[int, int, int], SimSale] = {}
    hung_up: dict[tuple[int, int, int], float] = {}
    got: dict[str, list[Sale]] = {}
    errors: dict[str, int] = {}
    links: list[PumpLink] = []
    delays: list[float] = []
    while now < 600:
        while actions and actions[0][0] <= now:
            _, what, i = actions.pop(0)
            s = sessions[i]
            nozzle = s.pump.nozzle(s.nozzle)
            if what == 0:
                s.pump.lift(nozzle, s.volume)
            elif what == 1:
                s.pump.start_fuel(nozzle, now, s.fuel_s)
            else:
                sim = s.pump.hang_up(nozzle, PUMP_CLOCK + timedelta(seconds=now))
                sims[(sim.address, sim.nozzle, sim.totalizer_volume_end)] = sim
                hung_up[(sim.address, sim.nozzle, sim.totalizer_volume_end)] = now
        request = driver.next_request()
        assert request is not None
        reply = to_master.apply(responder.receive_data(to_pump.apply(request), now))
        cut = rng.randint(0, len(reply))  # replies arrive in one or two reads
        events: list[Event] = driver.receive_data(reply[:cut])
        if cut < len(reply):
            events += driver.receive_data(reply[cut:])
        now += (len(request) + len(reply)) * BITS_PER_BYTE / BAUD + POLL_GAP_S
        if driver.awaiting_response:
            events += driver.response_timeout()
            now += TIMEOUT_S
        for event in events:
            if isinstance(event, Sale):
                sim = check(event, sims)  # zero wrong sales
                seen = hung_up[(sim.address, sim.nozzle, sim.totalizer_volume_end)]
                delays.append((event.ended_at - EPOCH).total_seconds() - seen)
                got.setdefault(event.key, []).append(event)
                driver.sale_committed(event)  # store first: committed at once
            elif isinstance(event, ProtocolError):
                errors[event.kind] = errors.get(event.kind, 0) + 1
            elif isinstance(event, PumpLink):
                links.append(event)
        if not actions and len(got) == len(sims) and all(not m.pending for m in models):
            break
    assert len(sims) == 45 and len(got) == len(sims)  # every sale eventually read
    assert all(len(v) == 1 for v in got.values())  # committed at once: emitted once
    assert sum(m.taken for m in models) == len(sims)
    # ended_at: when the end was first seen, within a few polls. A read at 1 %
    # noise can take seconds, and meanwhile this simulator (unlike a pump)
    # queues the next sale behind the unread one, its fill hidden behind A:
    # that sale's end is dated from the first A after the read, up to a fill
    # early. Most are seen at once; none is off by more than a fill and a read.
    assert all(-6.0 < d < 6.0 for d in delays), delays
    assert sum(-0.5 < d < 2.0 for d in delays) >= 0.8 * len(delays), delays
    # Online at once; a pump whose commands were corrupted (to another
    # address) several times in a row may look offline for a moment.
    assert set(links[:3]) == {PumpLink(1, True), PumpLink(2, True), PumpLink(16, True)}
    last = {link.address: link.online for link in links}
    assert last == dict.fromkeys((1, 2, 16), True)
    # The line really was noisy and the driver really recovered.
    assert to_master.flipped_bits > 50 and to_pump.flipped_bits > 5
    assert errors.get("bad_lrc", 0) + errors.get("bad_message", 0) > 5
    assert time.monotonic() - started < 10
