"""CK1313: the simulator's responder, the poller against it over a noisy line,
``forecourt decode`` (describe) and the line census.

No pty: requests go straight to the responder, replies back through
:class:`LineFaults` on a simulated clock, seeded. Sale fields against the
ground truth: ``order_no`` is the volume total after the sale (10 digits),
``grade`` "" (the wire has neither a transaction number nor a grade).
"""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from hil.dispenser.ck1313 import Ck1313Responder, order_no_of
from hil.dispenser.faults import LineFaults
from hil.dispenser.model import PumpModel, SimSale
from protocols import descriptor
from protocols.ck1313.census import census
from protocols.ck1313.describe import describe
from protocols.ck1313.driver import Ck1313Poller
from protocols.ck1313.messages import build_request
from protocols.ck1313.monitor import Ck1313Monitor
from protocols.events import Event, ProtocolError, Sale
from tests.test_ck1313_framer import (
    PRICE_REPLY,
    SALE_REPLY,
    SET_PRICE_PUMP1,
    STATUS_QUERY_PUMP1,
    STATUS_REPLY,
    TOTALS_REPLY,
)

EPOCH = datetime(2026, 5, 1, 8, 0, 0)
PUMP_CLOCK = datetime(2026, 5, 1, 0, 0, 0, tzinfo=UTC)
#: 4800 baud 8E1: 11 bits per byte (lischn006.c:4).
BAUD, BITS_PER_BYTE = 4800, 11
POLL_GAP_S, TIMEOUT_S = 0.05, 0.3


def hundredths(value: int) -> Decimal:
    return Decimal(value).scaleb(-2)


def test_responder_shows_the_oldest_sale_until_collected() -> None:
    (pump,) = [PumpModel.create(2, 1, random.Random(1))]
    responder = Ck1313Responder([pump])
    assert responder.protocol == "ck1313" and responder.AMOUNT_TOTALIZER

    def ask(command: int, now: float) -> bytes:
        return responder.receive_data(build_request(2, command), now)

    assert ask(0xD5, 0.0)[2] == 0x80  # idle
    nozzle = pump.nozzle(1)
    pump.lift(nozzle, 2000)
    assert ask(0xD5, 1.0)[2] == 0x00
    pump.start_fuel(nozzle, 1.0, seconds=2.0)
    assert ask(0xD5, 2.0)[2] == 0x20
    sale = pump.hang_up(nozzle, PUMP_CLOCK)
    assert ask(0xD5, 3.0)[2] == 0x80
    totals = ask(0xC5, 3.0)
    assert totals[2:12].hex() == f"{sale.totalizer_volume_end:010d}{sale.totalizer_amount_end:010d}"
    assert ask(0xD9, 3.0)[2:8].hex() == f"{sale.volume:06d}{sale.amount:06d}"
    assert ask(0xD5, 3.0) and pump.pending  # B6 not yet read: still shown
    assert ask(0xB6, 3.0)[2:4].hex() == f"{sale.price:04d}"
    ask(0xD5, 3.0)
    assert not pump.pending and pump.taken == 1
    assert responder.truth(sale, 1)["order_no"] == order_no_of(sale) and (
        responder.truth(sale, 1)["grade"] == ""
    )
    with pytest.raises(ValueError):
        Ck1313Responder([PumpModel.create(1, 2, random.Random(1))])  # one nozzle only
    with pytest.raises(ValueError):
        Ck1313Responder([PumpModel.create(7, 1, random.Random(1))])  # 1..6


def check(sale: Sale, sims: dict[tuple[int, str], SimSale]) -> SimSale:
    """The Sale equals the SimSale it claims to be, field by field."""
    sim = sims.get((sale.address, sale.order_no))
    assert sim is not None, f"a sale the pumps never made: {sale}"
    assert sale.order_no == order_no_of(sim) and sale.grade == "" and sale.nozzle == 1
    assert sale.key == f"{sim.totalizer_volume_end:010d}:{sim.totalizer_amount_end:010d}"
    assert (sale.price, sale.volume, sale.amount) == (
        hundredths(sim.price),
        hundredths(sim.volume),
        hundredths(sim.amount),
    )
    assert sale.totalizer_volume_end == hundredths(sim.totalizer_volume_end)
    assert sale.totalizer_amount_end == hundredths(sim.totalizer_amount_end)
    return sim


@pytest.mark.parametrize("seed", [1, 2])
def test_poller_and_monitors_over_a_noisy_line(seed: int) -> None:
    """~0.8 % of reply bytes hit (1e-3 per bit): every sale read, none wrong, by
    the poller and by a relay monitor and a listening tap beside it."""
    rng = random.Random(seed)
    models = [PumpModel.create(a, 1, rng) for a in (1, 2, 6)]
    responder = Ck1313Responder(models)
    faults = LineFaults(rng=random.Random(seed + 100), bit_error_rate=1e-3)
    now = 0.0
    clock = lambda: EPOCH + timedelta(seconds=now)  # noqa: E731
    driver = Ck1313Poller([1, 2, 6], clock=clock)
    relay, tap = Ck1313Monitor([1, 2, 6], clock=clock), Ck1313Monitor([1, 2, 6], clock=clock)
    sims: dict[tuple[int, str], SimSale] = {}
    got: dict[str, dict[str, Sale]] = {"poll": {}, "relay": {}, "tap": {}}
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
        cut = rng.randint(0, len(reply))  # replies arrive in one or two reads
        events: list[Event] = driver.receive_data(reply[:cut]) + driver.receive_data(reply[cut:])
        now += (len(request) + len(reply)) * BITS_PER_BYTE / BAUD + POLL_GAP_S
        if driver.awaiting_response:
            events += driver.response_timeout()
            now += TIMEOUT_S
        passive = relay.receive_request(request) + relay.receive_response(reply)
        for who, stream in (("poll", events), ("relay", passive), ("tap", tap.receive_bus(reply))):
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
    # The monitors read what the poller (their POS here) read, with the same keys;
    # a few may be lost to the noise they cannot ask again about.
    assert set(got["relay"]) <= set(got["poll"]) and len(got["relay"]) >= 27
    assert set(got["tap"]) <= set(got["poll"]) and len(got["tap"]) >= 27
    assert faults.flipped_bits > 50 and errors.get("bad_lrc", 0) > 5


# ---------------------------------------------------------------- decode, census


def test_describe_a_capture_in_stream_order() -> None:
    capture = STATUS_QUERY_PUMP1 + STATUS_REPLY + b"\x00\x01" + TOTALS_REPLY + SALE_REPLY
    capture += PRICE_REPLY + SET_PRICE_PUMP1 + SALE_REPLY[:-1] + b"\x7f" + TOTALS_REPLY[:6]
    lines = describe(capture)
    json.dumps(lines)  # JSON-able
    assert [(d["ok"], d.get("message") or d["error"], d["offset"]) for d in lines] == [
        (True, "request", 0),
        (True, "status", 4),
        (False, "garbage", 9),
        (True, "totals", 11),
        (True, "sale", 25),
        (True, "price", 35),
        (True, "request", 41),
        (False, "bad_lrc", 47),
        (False, "truncated", 57),
    ]
    request, status, _, totals, sale, price, set_price = lines[:7]
    assert request["values"] == {"command": "status", "read_only": True}
    assert request["fields"]["pump"] == 1 and request["direction"] == "master"
    assert status["values"] == {
        "command": "status",
        "state": "fuelling",
        "nozzle_state": "fuelling",
        "host_control": False,
    }
    assert totals["values"]["volume_total"] == "123456.78" and totals["direction"] == "pump"
    assert totals["values"]["amount_total"] == "987654.32"
    assert sale["values"]["volume"] == "25.00" and sale["values"]["amount"] == "196.25"
    assert price["values"]["price"] == "7.85"
    assert set_price["values"] == {"command": "set price", "read_only": False}
    assert set_price["fields"]["value"] == 785


def test_describe_through_the_registry_and_decimals() -> None:
    describer = descriptor("ck1313").load("describer")
    (line,) = describer(SALE_REPLY, volume_decimals=3)
    assert line["values"]["volume"] == "2.500"


def test_census_counts_good_and_bad_frames_and_sides() -> None:
    capture = (STATUS_QUERY_PUMP1 + STATUS_REPLY) * 3 + TOTALS_REPLY + b"\x12\x34"
    capture += SALE_REPLY[:-1] + b"\x7f"
    found = census(capture)
    assert (found.good_frames, found.bad_frames) == (7, 2)
    assert (found.master_frames, found.pump_frames) == (3, 4)
    assert found.addresses == frozenset({1})
    assert found.evidence[0].startswith("F5 A2 D5 02: status, pump 1, master")
    other = census(bytes(random.Random(1).randbytes(400)))
    assert other.good_frames <= 1 and other.bad_frames > 0


def test_options_are_the_drivers_keywords_with_its_defaults() -> None:
    import dataclasses
    import inspect

    options_cls = descriptor("ck1313").load("options")
    defaults = dataclasses.asdict(options_cls())
    parameters = inspect.signature(Ck1313Poller).parameters
    assert {name: parameters[name].default for name in defaults} == defaults
    Ck1313Poller([1], **defaults)  # the daemon builds the driver with these
