"""Lanfeng: the simulator's responder, the poller and a relay monitor against it over a
noisy line, ``forecourt decode`` (describe) and the line census.

No pty: requests go straight to the responder, replies back through
:class:`LineFaults` on a simulated clock, seeded. Sale fields against the
ground truth: ``order_no`` is the volume total after the sale (12 digits),
``grade`` "".
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from hil.dispenser.faults import LineFaults
from hil.dispenser.lanfeng import LanfengResponder, order_no_of
from hil.dispenser.model import PumpModel, SimSale
from protocols import descriptor
from protocols.events import Event, ProtocolError, Sale
from protocols.lanfeng.census import census
from protocols.lanfeng.describe import describe
from protocols.lanfeng.driver import LanfengPoller
from protocols.lanfeng.messages import build_request
from protocols.lanfeng.monitor import LanfengMonitor
from tests.test_lanfeng_framer import (
    A0_PUMP1,
    AD_PUMP1,
    B8_PUMP1,
    SET_PRICE_PUMP1,
    STATUS_REPLY,
    VOLUME_TOTAL_REPLY,
)

EPOCH = datetime(2026, 5, 1, 8, 0, 0)
PUMP_CLOCK = datetime(2026, 5, 1, 0, 0, 0, tzinfo=UTC)
#: 9600 baud 8N1: 10 bits per byte (lischn017.c:4).
BAUD, BITS_PER_BYTE = 9600, 10
POLL_GAP_S, TIMEOUT_S = 0.05, 0.3


def hundredths(value: int) -> Decimal:
    return Decimal(value).scaleb(-2)


def test_responder_shows_the_oldest_sale_until_collected() -> None:
    pump = PumpModel.create(3, 1, random.Random(1))
    responder = LanfengResponder([pump])
    assert responder.protocol == "lanfeng" and responder.AMOUNT_TOTALIZER

    def ask(command: int, now: float) -> bytes:
        return responder.receive_data(build_request(3, command), now)

    assert ask(0xB8, 0.0)[10] == 0x01  # idle, no host control
    nozzle = pump.nozzle(1)
    pump.lift(nozzle, 2000)
    assert ask(0xB8, 1.0)[10] == 0x81
    pump.start_fuel(nozzle, 1.0, seconds=2.0)
    assert ask(0xB8, 2.0)[7:10].hex() == "001000" and ask(0xB8, 2.0)[10] == 0x82  # half-way
    sale = pump.hang_up(nozzle, PUMP_CLOCK)
    assert ask(0xB8, 3.0)[10] == 0x01
    assert ask(0xAD, 3.0)[5:11].hex() == f"{sale.totalizer_volume_end:012d}"
    assert ask(0xAC, 3.0)[5:11].hex() == f"{sale.totalizer_amount_end:012d}"
    assert ask(0xB8, 3.0)[2:10].hex() == f"{sale.price:04d}{sale.amount:06d}{sale.volume:06d}"
    assert pump.pending  # that B8 was a reading's step (after AC): still shown
    ask(0xB8, 3.0)  # a status poll: collected
    assert not pump.pending and pump.taken == 1
    assert (
        responder.truth(sale, 1)["order_no"]
        == order_no_of(sale)
        == f"{sale.totalizer_volume_end:012d}"
    )
    with pytest.raises(ValueError):
        LanfengResponder([PumpModel.create(1, 2, random.Random(1))])  # one nozzle only
    with pytest.raises(ValueError):
        LanfengResponder([PumpModel.create(16, 1, random.Random(1))])  # 1..15


def check(sale: Sale, sims: dict[tuple[int, str], SimSale]) -> None:
    """The Sale equals the SimSale it claims to be, field by field."""
    sim = sims.get((sale.address, sale.order_no))
    assert sim is not None, f"a sale the pumps never made: {sale}"
    assert sale.key == f"{sim.totalizer_volume_end:012d}:{sim.totalizer_amount_end:012d}"
    assert (sale.price, sale.volume, sale.amount, sale.grade, sale.nozzle) == (
        hundredths(sim.price),
        hundredths(sim.volume),
        hundredths(sim.amount),
        "",
        1,
    )
    assert sale.totalizer_volume_end == hundredths(sim.totalizer_volume_end)
    assert sale.totalizer_amount_end == hundredths(sim.totalizer_amount_end)


@pytest.mark.parametrize("seed", [1, 2])
def test_poller_and_relay_monitor_over_a_noisy_line(seed: int) -> None:
    """~1 % of reply bytes hit (1e-3 per bit): every sale read by the poller, none
    wrong; a relay monitor beside it reads the same ones with the same keys."""
    rng = random.Random(seed)
    models = [PumpModel.create(a, 1, rng) for a in (1, 2, 15)]
    responder = LanfengResponder(models)
    faults = LineFaults(rng=random.Random(seed + 100), bit_error_rate=1e-3)
    now = 0.0
    clock = lambda: EPOCH + timedelta(seconds=now)  # noqa: E731
    driver = LanfengPoller([1, 2, 15], clock=clock)
    relay = LanfengMonitor([1, 2, 15], clock=clock)
    sims: dict[tuple[int, str], SimSale] = {}
    got: dict[str, dict[str, Sale]] = {"poll": {}, "relay": {}}
    errors: dict[str, int] = {}
    next_fill = 1.0
    while now < 900:
        if now >= next_fill and len(sims) < 30:
            model = rng.choice(models)
            nozzle = model.nozzle(1)
            if model.can_start(nozzle):
                model.lift(nozzle, rng.randint(200, 8000))
                model.start_fuel(nozzle, now + 0.3, rng.uniform(1.0, 4.0))
            next_fill = now + rng.uniform(2.0, 8.0)
        for model in models:
            nozzle = model.nozzle(1)
            if nozzle.state == "fuelling" and nozzle.live_volume(now) >= nozzle.target:
                sim = model.hang_up(nozzle, PUMP_CLOCK + timedelta(seconds=now))
                sims[(sim.address, order_no_of(sim))] = sim
        request = driver.next_request()
        assert request is not None
        reply = faults.apply(responder.receive_data(request, now))
        cut = rng.randint(0, len(reply))
        events: list[Event] = driver.receive_data(reply[:cut]) + driver.receive_data(reply[cut:])
        now += (len(request) + len(reply)) * BITS_PER_BYTE / BAUD + POLL_GAP_S
        if driver.awaiting_response:
            events += driver.response_timeout()
            now += TIMEOUT_S
        passive = relay.receive_request(request) + relay.receive_response(reply)
        for who, stream in (("poll", events), ("relay", passive)):
            for event in stream:
                if isinstance(event, Sale):
                    check(event, sims)  # zero wrong sales, whoever read it
                    got[who].setdefault(event.key, event)
                    if who == "poll":
                        driver.sale_committed(event)
                elif isinstance(event, ProtocolError) and who == "poll":
                    errors[event.kind] = errors.get(event.kind, 0) + 1
        if len(sims) == 30 and len(got["poll"]) == 30 and all(not m.pending for m in models):
            break
    assert len(sims) == 30 and len(got["poll"]) == 30  # every sale read by the poller
    assert sum(m.taken for m in models) == 30
    assert set(got["relay"]) <= set(got["poll"]) and len(got["relay"]) >= 27
    assert faults.flipped_bits > 50 and errors.get("garbage", 0) > 5


# ---------------------------------------------------------------- decode, census


def test_describe_a_capture_in_stream_order() -> None:
    capture = B8_PUMP1 + STATUS_REPLY + b"\x00\x01" + AD_PUMP1 + VOLUME_TOTAL_REPLY
    capture += A0_PUMP1 + SET_PRICE_PUMP1 + STATUS_REPLY[:7]
    lines = describe(capture)
    json.dumps(lines)  # JSON-able
    assert [(d["ok"], d.get("message") or d["error"], d["offset"]) for d in lines] == [
        (True, "request", 0),
        (True, "reply", 12),
        (False, "garbage", 24),
        (True, "request", 26),
        (True, "reply", 38),
        (True, "request", 50),
        (True, "request", 62),
        (False, "truncated", 74),
    ]
    request, status, _, totals_request, totals, host, price = lines[:7]
    assert request["values"] == {"command": "status", "read_only": True}
    assert status["values"]["status"] == {
        "state": "idle",
        "nozzle_state": "idle",
        "host_control": True,
        "price": "7.85",
        "amount": "196.25",
        "volume": "25.00",
    }
    assert totals["values"]["total"]["as_volume"] == "12345678.90"
    assert totals["values"]["status"] is None  # its [10] is no state
    assert host["values"] == {"command": "host control", "read_only": False}
    assert price["values"]["command"] == "set price" and price["fields"]["value"] == 785
    assert totals_request["values"]["read_only"] is True


def test_census_counts_good_and_bad_frames_and_sides() -> None:
    capture = (B8_PUMP1 + STATUS_REPLY) * 3 + AD_PUMP1 + VOLUME_TOTAL_REPLY + b"\x12\x34\x56"
    found = census(capture)
    assert (found.good_frames, found.master_frames, found.pump_frames) == (8, 4, 4)
    assert found.bad_frames == 0  # three trailing bytes: an incomplete frame says nothing yet
    assert found.addresses == frozenset({1})
    assert found.evidence[0].startswith("01 00 B8")
    assert census(random.Random(1).randbytes(400)).good_frames <= 2


def test_options_are_the_drivers_keywords_with_its_defaults() -> None:
    options_cls = descriptor("lanfeng").load("options")
    defaults = dataclasses.asdict(options_cls())
    parameters = inspect.signature(LanfengPoller).parameters
    assert {name: parameters[name].default for name in defaults} == defaults
    LanfengPoller([1], **defaults)
