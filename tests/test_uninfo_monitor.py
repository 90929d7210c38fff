"""The Changkong Uninfo monitor (protocols/uninfo/monitor.py), relay and listen.

The controller is an FCC talking as ``fangym0335/first src/lischn011.c``
does: status polls, the running display while fuelling, and at the end of
a fill the totals then the last sale, each read once (``DoEot``,
``:1128-1180``); frames from tests/uninfo_source.py.
"""

from __future__ import annotations

import random
from datetime import datetime
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.events import Event, PumpLink, Sale
from protocols.uninfo.monitor import UninfoMonitor
from tests.test_uninfo_driver import RECORD, T1, T2, T2_AFTER, Pump, poller, turn
from tests.uninfo_source import fcc_display, fcc_preset_block, fcc_price_block, fcc_totals

CLOCK = datetime(2026, 3, 1, 9, 30)

#: An FCC's conversation with pump 3 across one fill on nozzle 2.
CONVERSATION = [
    (b"\xa3", b"\x13"),
    (b"\xb3", fcc_totals([T1, T2])),  # InitPumpTotal, :1767-1800
    (b"\xa3", b"\x23"),
    (b"\xa3", b"\x43"),
    (b"\x83", fcc_display(1254, 150)),
    (b"\xa3", b"\x63"),
    (b"\xb3", fcc_totals([T1, T2_AFTER])),  # DoEot: totals first, :1146
    (b"\xc3", RECORD),  # then the record, as the nozzle's total moved, :1174-1180
    (b"\xa3", b"\x13"),
]


def monitor(**options: object) -> UninfoMonitor:
    return UninfoMonitor([3], clock=lambda: CLOCK, **options)  # type: ignore[arg-type]


def sales(events: list[Event]) -> list[Sale]:
    return [e for e in events if isinstance(e, Sale)]


def relay(watcher: UninfoMonitor, conversation: list[tuple[bytes, bytes]]) -> list[Event]:
    events: list[Event] = []
    for request, answer in conversation:
        events += watcher.receive_request(request) + watcher.receive_response(answer)
    return events


def the_pollers_sale() -> Sale:
    """The poller's sale of the same record and totals: the same in every field."""
    [sale] = sales(turn(poller(), Pump(totals=fcc_totals([T1, T2_AFTER]), record=RECORD)))
    return sale


def test_relay_reads_the_fccs_sale_as_the_poller_does() -> None:
    events = relay(monitor(), CONVERSATION)
    assert events[0] == PumpLink(3, online=True)
    [sale] = sales(events)
    assert sale == the_pollers_sale()
    assert (sale.nozzle, sale.key, sale.amount) == (2, "2:10724828", Decimal("209.00"))


def test_the_loop_itself_reads_alike_whatever_the_reads() -> None:
    stream = b"".join(r + a for r, a in CONVERSATION)
    for size in (1, 7, len(stream)):
        watcher = monitor()
        events = [
            e for k in range(0, len(stream), size) for e in watcher.receive_bus(stream[k:][:size])
        ]
        assert sales(events) == [the_pollers_sale()]
        assert watcher.counters["bus_garbage_bytes"] == 0


def test_relay_with_an_echoing_loop_skips_the_echo() -> None:
    watcher = monitor(echo=True)
    events: list[Event] = []
    for request, answer in CONVERSATION:
        events += watcher.receive_request(request) + watcher.receive_response(request + answer)
    assert sales(events) == [the_pollers_sale()]
    assert watcher.counters["echoes"] == len(CONVERSATION)


def test_a_record_read_again_is_one_sale_and_one_before_its_totals_waits() -> None:
    watcher = monitor()
    again = [*CONVERSATION, (b"\xc3", RECORD), (b"\xb3", fcc_totals([T1, T2_AFTER]))]
    assert len(sales(relay(watcher, again))) == 1
    assert watcher.counters["records_again"] == 1
    # Record first, totals after: paired once they come.
    waits = monitor()
    order = [*CONVERSATION[:6], CONVERSATION[7], CONVERSATION[6]]
    assert sales(relay(waits, order)) == [the_pollers_sale()]
    # Record first, then a fill: it cannot be paired any more.
    dropped = monitor()
    order = [*CONVERSATION[:6], CONVERSATION[7], (b"\xa3", b"\x43")]
    assert sales(relay(dropped, order)) == []
    assert dropped.counters["records_unpaired"] == 1


def test_the_controllers_commands_are_counted_by_name() -> None:
    watcher = monitor()
    price = fcc_price_block(3, 0x0836)
    preset = fcc_preset_block(3, bytes([0x00, 0x20, 0x00]), by_amount=True)
    d_reply = bytes([0xD3, 0xFF, *[0xE0] * 6, 0xE0, 0xFB, 0xE0, 0xF0])  # [0] D3, [8] E0: done
    stream = b"\x93" + b"\x73" + b"\xfe" + price + d_reply + preset + d_reply
    events = watcher.receive_bus(stream)
    assert not [e for e in events if not isinstance(e, PumpLink)]
    counts = watcher.counters
    assert [counts[f"pos_cmd_{n}"] for n in ("authorise", "stop", "price", "preset")] == [
        1,
        2,
        1,
        1,
    ]
    assert counts["acks"] == 2


def test_offline_after_unanswered_requests_and_back() -> None:
    watcher = monitor(offline_after=2)
    relay(watcher, CONVERSATION[:1])
    events = [e for _ in range(3) for e in watcher.receive_request(b"\xa3")]
    assert events == [PumpLink(3, online=False)]
    assert PumpLink(3, online=True) in watcher.receive_response(b"\x13")


def test_a_pump_not_configured_is_foreign() -> None:
    watcher = monitor()
    watcher.receive_bus(b"\xa5\x15\xa3\x13")
    assert watcher.foreign_addresses == {5: 2}


def mutate(data: bytes, rng: random.Random, hits: int) -> bytes:
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


@settings(max_examples=120, deadline=None)
@given(st.integers(0, 2**32), st.integers(0, 1), st.sampled_from(["relay", "bus"]))
def test_one_hit_per_frame_never_raises_nor_invents_a_sale(seed: int, hits: int, how: str) -> None:
    """One mutation per frame at most: the 4-bit check catches any one changed
    word, so a sale is the true one or none."""
    rng = random.Random(seed)
    watcher = monitor()
    events: list[Event] = []
    # The conversation, then the FCC polling and reading the same sale again
    # (the totals only grow: a replay from the start would be no pump's).
    again = [(b"\xa3", b"\x13")] * 3 + CONVERSATION[-3:]
    for request, answer in CONVERSATION + again:
        answer = mutate(answer, rng, hits if rng.random() < 0.5 else 0)
        if how == "relay":
            events += watcher.receive_request(request) + watcher.receive_response(answer)
        else:
            events += watcher.receive_bus(request + answer)
    assert all(s.key == "2:10724828" and s.volume == Decimal("25.00") for s in sales(events))


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=300), st.sampled_from(["relay", "bus"]))
def test_noise_never_raises(noise: bytes, how: str) -> None:
    watcher = monitor()
    if how == "relay":
        watcher.receive_request(noise[:10])
        watcher.receive_response(noise)
    else:
        watcher.receive_bus(noise)


def test_the_port_config_reaches_the_monitor() -> None:
    """collector.assembly.make_monitor: echo, decimals and grades as for the
    poller, the station's clock; options only a poller uses are left out."""
    from datetime import timedelta, timezone

    from collector.assembly import make_monitor
    from config.models_ports import PortConfig

    port = PortConfig(
        number=1, device="/dev/ttyS1", protocol="uninfo", mode="listen", addresses=[3],
        uninfo={"echo": True, "volume_decimals": 3, "reads": 5, "grades": {"2": "1095"}},
    )  # fmt: skip
    tz = timezone(timedelta(hours=8))
    watcher = make_monitor(port, tz)
    events: list[Event] = []
    for request, answer in CONVERSATION:
        events += watcher.receive_request(request) + watcher.receive_response(request + answer)
    [sale] = sales(events)
    assert (sale.nozzle, sale.grade, sale.volume) == (2, "1095", Decimal("2.500"))
    assert abs(sale.ended_at - datetime.now(tz).replace(tzinfo=None)) < timedelta(minutes=1)
