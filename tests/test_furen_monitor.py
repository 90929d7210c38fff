"""FurenMonitor (relay and listen): the FCC's frames (fangym0335/first
src/lischn009.c) read as the poller reads them, the sides told by command and
length, the controller's commands counted, link state, and mutated streams."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.events import Event, NozzleState, NozzleStatus, ProtocolError, PumpLink, Sale
from protocols.furen.framer import Frame, FrameDecoder
from protocols.furen.messages import side
from protocols.furen.monitor import FurenMonitor
from tests.test_furen_driver import (
    FUELLING_2_AT_25,
    IDLE,
    LIFTED_2,
    NOW,
    POWER_UP,
    TOTALS_REPLY,
    ask,
    poller,
)
from tests.test_furen_framer import (
    AUTHORISE,
    HOST_MODE,
    SALE_REPLY,
    SALE_REQUEST,
    STATUS_REQUEST,
    TOTALS_REQUEST,
    fcc_frame,
)

#: The FCC's price write for nozzle 1 at 7.85 (lischn009.c:822-836) and the
#: pump's 10-byte acknowledgement ([7] 01, :836, :871).
SET_PRICE = fcc_frame(0xFA, 0x00, 0x00, 0xF0, 0x00, 0x04, 0x51, 0x07, 0x85, 0x01)
PRICE_ACK = fcc_frame(0xFA, 0x00, 0x00, 0xF0, 0x00, 0x02, 0x51, 0x01)
#: A preset of 1.00 L (lischn009.c:1716-1733, LEN 5) and a stop (:1221-1233).
PRESET = fcc_frame(0xFA, 0x00, 0x00, 0xF8, 0x00, 0x05, 0x60, 0x00, 0x01, 0x00, 0x01)
STOP = fcc_frame(0xFA, 0x00, 0x00, 0x00, 0x00, 0x02, 0x62, 0x01)


def monitor(**options: object) -> FurenMonitor:
    return FurenMonitor([1], clock=lambda: NOW, **options)  # type: ignore[arg-type]


def frame(wire: bytes) -> Frame:
    [found] = FrameDecoder().receive_data(wire)
    assert isinstance(found, Frame)
    return found


def sales(events: list[Event]) -> list[Sale]:
    return [e for e in events if isinstance(e, Sale)]


def test_every_source_frame_tells_its_side_by_command_and_length() -> None:
    requests = [STATUS_REQUEST, SALE_REQUEST, TOTALS_REQUEST, SET_PRICE, PRESET]
    answers = [SALE_REPLY, TOTALS_REPLY, IDLE, LIFTED_2, FUELLING_2_AT_25, PRICE_ACK]
    assert [side(frame(w)) for w in requests] == ["master"] * len(requests)
    assert [side(frame(w)) for w in answers] == ["pump"] * len(answers)
    # 5D, 61 and 62: their answers' layout is not in the source — either side.
    assert [side(frame(w)) for w in (HOST_MODE, AUTHORISE, STOP, POWER_UP)] == [None] * 4


def test_relay_reads_the_fccs_sale_as_the_poller_does() -> None:
    watcher = monitor(grades={"2": "1092"})
    events = watcher.receive_request(SALE_REQUEST) + watcher.receive_response(SALE_REPLY)
    assert events[0] == PumpLink(1, online=True)
    [seen] = sales(events)
    driver = poller(grades={"2": "1092"})
    for _ in range(2):
        ask(driver, 0x56, 2)
        polled = sales(driver.receive_data(SALE_REPLY))
    assert polled == [seen]  # same key, same fields, same time
    # The controller reading it again is not a second sale.
    again = watcher.receive_request(SALE_REQUEST) + watcher.receive_response(SALE_REPLY)
    assert sales(again) == []


def test_an_answer_is_read_as_what_was_asked() -> None:
    watcher = monitor()
    # A totals answer to a sale read: not a sale, not totals.
    assert watcher.receive_request(SALE_REQUEST) == []
    [link, error] = watcher.receive_response(TOTALS_REPLY)
    assert link == PumpLink(1, True)
    assert isinstance(error, ProtocolError) and error.kind == "unexpected"
    events = watcher.receive_request(TOTALS_REQUEST) + watcher.receive_response(TOTALS_REPLY)
    assert [type(e).__name__ for e in events] == ["Totals"]
    # The nozzle is the request's: nozzle 1 asked, the answer's [3] not needed.
    single = monitor(nozzles=1)
    request = fcc_frame(0xFA, 0x00, 0x00, 0xF0, 0x00, 0x01, 0x56)
    [sale] = sales(single.receive_request(request) + single.receive_response(SALE_REPLY))
    assert sale.nozzle == 1


def test_a_tap_on_the_pumps_pair_reads_answers_alone() -> None:
    # RS-422: the pump's pair carries only its answers; the nozzle from [3].
    watcher = monitor()
    events = watcher.receive_bus(IDLE + LIFTED_2 + IDLE + SALE_REPLY + TOTALS_REPLY + PRICE_ACK)
    statuses = [e for e in events if isinstance(e, NozzleStatus)]
    assert statuses == [
        NozzleStatus(1, 1, NozzleState.IDLE),
        NozzleStatus(1, 2, NozzleState.IDLE),
        NozzleStatus(1, 2, NozzleState.LIFTED),
        NozzleStatus(1, 2, NozzleState.IDLE),
    ]
    assert [s.key for s in sales(events)] == ["2:123456"]
    assert watcher.counters["acks"] == 1


def test_a_bus_carrying_both_sides_counts_the_controllers_commands() -> None:
    watcher = monitor()
    stream = (
        STATUS_REQUEST + LIFTED_2 + AUTHORISE + fcc_frame(0xFA, 0, 0, 0, 0, 2, 0x61, 0x01)
        + SET_PRICE + PRICE_ACK + PRESET + PRICE_ACK + STOP + HOST_MODE
        + STATUS_REQUEST + IDLE + SALE_REQUEST + SALE_REPLY
    )  # fmt: skip
    events = watcher.receive_bus(stream)
    assert [s.key for s in sales(events)] == ["2:123456"]
    counters = watcher.counters
    assert counters["pos_cmd_set_price"] == 1 and counters["pos_cmd_preset"] == 1
    assert counters["unknown_side"] == 4  # 61 and its answer, 62, 5D
    assert counters["requests"] == 5 and counters["responses"] == 5


def test_a_record_with_the_volume_of_the_fill_going_on_is_not_a_sale() -> None:
    watcher = monitor()
    events = watcher.receive_request(STATUS_REQUEST) + watcher.receive_response(FUELLING_2_AT_25)
    events += watcher.receive_request(SALE_REQUEST) + watcher.receive_response(SALE_REPLY)
    assert sales(events) == [] and watcher.counters["records_while_fuelling"] == 1
    events = watcher.receive_request(STATUS_REQUEST) + watcher.receive_response(IDLE)
    events += watcher.receive_request(SALE_REQUEST) + watcher.receive_response(SALE_REPLY)
    assert [s.key for s in sales(events)] == ["2:123456"]


def test_offline_after_unanswered_requests_and_back() -> None:
    watcher = monitor(offline_after=2)
    events = watcher.receive_request(SALE_REQUEST) + watcher.receive_response(SALE_REPLY)
    for _ in range(3):
        events += watcher.receive_request(STATUS_REQUEST)
    events += watcher.receive_response(IDLE)
    links = [e for e in events if isinstance(e, PumpLink)]
    assert links == [PumpLink(1, True), PumpLink(1, False), PumpLink(1, True)]


def test_a_garbled_answer_never_carries_a_good_one_into_the_next_request() -> None:
    # The answer to nozzle 2's read cut by a bad length byte: the relay must not
    # read the frame that follows as the answer to the next request.
    cut = bytearray(SALE_REPLY)
    cut[5] = 0x30  # LEN 48: swallows what follows
    watcher = monitor()
    events = watcher.receive_request(SALE_REQUEST) + watcher.receive_response(bytes(cut))
    events += watcher.receive_request(TOTALS_REQUEST) + watcher.receive_response(TOTALS_REPLY)
    assert sales(events) == []
    assert [type(e).__name__ for e in events if not isinstance(e, ProtocolError)] == [
        "PumpLink",
        "Totals",
    ]


def test_one_line_one_fuelling_point() -> None:
    with pytest.raises(ValueError, match="one fuelling point"):
        FurenMonitor([1, 2])
    assert not hasattr(FurenMonitor, "next_request")  # nothing to send, ever


CONVERSATION = [
    (STATUS_REQUEST, LIFTED_2),
    (AUTHORISE, fcc_frame(0xFA, 0, 0, 0, 0, 2, 0x61, 0x01)),
    (STATUS_REQUEST, FUELLING_2_AT_25),
    (STATUS_REQUEST, IDLE),
    (SALE_REQUEST, SALE_REPLY),
    (TOTALS_REQUEST, TOTALS_REPLY),
    (SET_PRICE, PRICE_ACK),
]


def mutate(data: bytes, rng: random.Random, hits: int) -> bytes:
    """``data`` with ``hits`` bytes flipped, dropped or inserted anywhere."""
    out = bytearray(data)
    for _ in range(hits):
        at = rng.randrange(len(out) + 1)
        match rng.randrange(3):
            case 0 if at < len(out):
                out[at] ^= 1 << rng.randrange(8)
            case 1 if at < len(out):
                del out[at]
            case _:
                out.insert(at, rng.randrange(256))
    return bytes(out)


@settings(max_examples=150, deadline=None)
@given(st.integers(0, 2**32), st.integers(1, 6), st.sampled_from(["relay", "bus", "tap"]))
def test_mutated_streams_never_raise_nor_invent_a_sale(seed: int, hits: int, how: str) -> None:
    rng = random.Random(seed)
    watcher = monitor()
    events: list[Event] = []
    for request, answer in CONVERSATION * 3:
        request = mutate(request, rng, rng.randrange(hits + 1))
        answer = mutate(answer, rng, rng.randrange(hits + 1))
        if how == "relay":
            events += watcher.receive_request(request) + watcher.receive_response(answer)
        else:
            events += watcher.receive_bus(request + answer if how == "bus" else answer)
    # The only sale on this line is nozzle 2's record: whatever the mutations
    # let through the CRC is that record or nothing.
    assert all(s.key == "2:123456" and str(s.volume) == "25.00" for s in sales(events))


def test_the_port_config_reaches_the_monitor() -> None:
    """collector.assembly.make_monitor: nozzles, decimals and grades as for the
    poller, the station's clock; options only a poller uses are left out."""
    from datetime import datetime, timedelta, timezone
    from decimal import Decimal

    from collector.assembly import make_monitor
    from config.models_ports import PortConfig

    port = PortConfig(
        number=1, device="/dev/ttyS1", protocol="furen", mode="listen", addresses=[1],
        furen={"nozzles": 3, "volume_decimals": 3, "sale_reads": 5, "grades": {"2": "1092"}},
    )  # fmt: skip
    tz = timezone(timedelta(hours=8))
    watcher = make_monitor(port, tz)
    [sale] = sales(watcher.receive_bus(SALE_REPLY))
    assert (sale.nozzle, sale.grade, sale.volume) == (2, "1092", Decimal("2.500"))
    assert abs(sale.ended_at - datetime.now(tz).replace(tzinfo=None)) < timedelta(minutes=1)
    # Three nozzles: [3] naming a fourth is refused.
    beyond = fcc_frame(*SALE_REPLY[:3], 0xF3, *SALE_REPLY[4:-2])
    assert [e.kind for e in watcher.receive_bus(beyond) if isinstance(e, ProtocolError)] == [
        "bad_message"
    ]


def test_the_controllers_commands_are_what_the_driver_may_never_send() -> None:
    """hil/pos_commands.py builds a station controller's authorise and price
    frames: the monitor counts them by name, the driver refuses them (D20)."""
    from decimal import Decimal

    from hil.pos_commands import FurenCommands
    from protocols.base import ForbiddenCommand

    commands = FurenCommands([1], ["authorise", "price"])
    authorise = commands.next_frame()
    assert authorise == AUTHORISE  # lischn009.c:1283-1293, byte for byte
    assert commands.next_frame() is None  # no price read yet
    commands.observe([poller_sale(Decimal("7.85"))])
    commands.next_frame()
    price = commands.next_frame()
    assert price == SET_PRICE  # lischn009.c:822-834
    watcher = monitor()
    watcher.receive_request(authorise + price)
    assert watcher.counters["pos_cmd_authorise"] == 1
    assert watcher.counters["pos_cmd_set_price"] == 1
    driver = poller()
    for wire in (authorise, price):
        with pytest.raises(ForbiddenCommand):
            driver._emit(frame(wire))


def poller_sale(price: object) -> Sale:
    """The poller's sale of nozzle 1 at ``price``."""
    from dataclasses import replace

    driver = poller()
    record = fcc_frame(*SALE_REPLY[:3], 0xF0, *SALE_REPLY[4:-2])
    for _ in range(2):
        ask(driver, 0x56, 1)
        found = sales(driver.receive_data(record))
    return replace(found[0], price=price)
