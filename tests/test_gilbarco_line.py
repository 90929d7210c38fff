"""The loop's conversation (protocols/gilbarco/line.py): echo, replies, sources, recovery.

The byte sequences are the loop as protocols.md §4 describes it (the echo,
command then reply on one line) with the FCC's commands and replies
(fangym0335/first src/lischn001.c: status 2030-2063, price change
1231-1266, special function 2117-2149, running display 1884-1916).
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.gilbarco.line import (
    Command,
    DataReply,
    Echo,
    Item,
    LineReader,
    MasterData,
    Rejected,
    Source,
    StatusReply,
)
from tests.test_gilbarco_messages import CAPTURED_TXN, FCC_SFC, FCC_TOTALS

RUNNING = bytes([0xE0, 0xE5, 0xE2, 0xE1, 0xE0, 0xE0])  # money 001250, least significant first
# lischn001.c:1252-1264: FF E5 F4 F6 E(nozzle − 1) F7 price×4 FB lrc F0.
FCC_PRICE = bytes([0xFF, 0xE5, 0xF4, 0xF6, 0xE0, 0xF7, 0xE5, 0xE8, 0xE7, 0xE0, 0xFB, 0xEC, 0xF0])
# lischn001.c:2169: the pump's 19-byte answer to the special function.
SFC_ANSWER = bytes.fromhex("bab0b3b1b0b1b0b0b0b0b1b0b1b1b1c3c18d8a")


def read(data: bytes, source: Source = None, *, chunk: int = 0) -> list[Item]:
    reader = LineReader()
    if not chunk:
        return reader.receive(data, source) + reader.flush()
    items: list[Item] = []
    for i in range(0, len(data), chunk):
        items += reader.receive(data[i : i + chunk], source)
    return items + reader.flush()


def kinds(items: list[Item]) -> list[str]:
    out = []
    for item in items:
        name = type(item).__name__
        if isinstance(item, Rejected):
            name += f":{item.error.kind}"
        out.append(name)
    return out


def size(item: Item) -> int:
    if isinstance(item, Command | StatusReply):
        return 1
    if isinstance(item, Echo | Rejected):
        return item.size
    if isinstance(item, DataReply | MasterData):
        return len(item.frame.raw)
    return len(item.words)


def test_a_poller_hears_its_echo_then_the_reply() -> None:
    reader = LineReader()
    reader.sent(0x01)
    assert reader.receive(b"\x01\x61", "pump") == [Echo(0, 1), StatusReply(1, 0x61, 0x01)]
    assert reader.pending is None
    reader.sent(0x41)
    items = reader.receive(b"\x41" + CAPTURED_TXN[:10], "pump")
    assert kinds(items) == ["Echo"] and reader.pending == 0x41 and reader.buffered == 10
    items = reader.receive(CAPTURED_TXN[10:], "pump")
    assert items == [DataReply(3, items[0].frame, 0x41)]  # type: ignore[union-attr]
    assert items[0].frame.raw == CAPTURED_TXN  # type: ignore[union-attr]


def test_without_the_echo_too() -> None:
    """Behind the FCC's IO board the driver reads the reply at cmd[0]
    (lischn001.c:2051-2056): no echo."""
    reader = LineReader()
    reader.sent(0x05)
    assert reader.receive(b"\xa5", "pump") == [StatusReply(0, 0xA5, 0x05)]


def test_a_tap_sees_command_then_reply() -> None:
    line = b"\x01\x61" + b"\x41" + CAPTURED_TXN + b"\x52" + FCC_TOTALS + b"\x63" + RUNNING
    items = read(line)
    assert kinds(items) == [
        "Command",
        "StatusReply",
        "Command",
        "DataReply",
        "Command",
        "DataReply",
        "Command",
        "RunningReply",
    ]
    assert [getattr(i, "request", None) for i in items[1::2]] == [0x01, 0x41, 0x52, 0x63]
    assert items == read(line, chunk=1)  # however the bytes were split


def test_the_echo_on_a_tap_is_skipped() -> None:
    assert kinds(read(b"\x01\x01\x61\x41\x41" + CAPTURED_TXN)) == [
        "Command",
        "Echo",
        "StatusReply",
        "Command",
        "Echo",
        "DataReply",
    ]


def test_status_0_data_error_after_the_echo() -> None:
    """A reply that equals its command is the second such byte (§4: echo first)."""
    assert kinds(read(b"\x01\x01\x01")) == ["Command", "Echo", "StatusReply"]


def test_a_silent_pump_and_the_next_command() -> None:
    items = read(b"\x01\x02\x62\x43\x04\xa4")
    assert kinds(items) == [
        "Command",
        "Command",
        "StatusReply",
        "Command",
        "Command",
        "StatusReply",
    ]
    assert [i.request for i in items if isinstance(i, StatusReply)] == [0x02, 0x04]


def test_6p_reads_as_status_only_when_pump_ps_status_is_awaited() -> None:
    assert kinds(read(b"\x01\x61")) == ["Command", "StatusReply"]
    assert kinds(read(b"\x61" + RUNNING)) == ["Command", "RunningReply"]
    assert kinds(read(b"\x02\x61" + RUNNING)) == ["Command", "Command", "RunningReply"]


def test_a_reply_without_its_command_is_still_read() -> None:
    items = read(b"\x91" + CAPTURED_TXN)
    assert items == [StatusReply(0, 0x91, None), DataReply(1, items[1].frame, None)]  # type: ignore[union-attr]


def test_a_price_change_as_the_fcc_sends_it() -> None:
    """2p → D, then the master's data frame, no reply (lischn001.c:1231-1266);
    2p → D, the special function, the pump's 19 bytes (2117-2165)."""
    line = b"\x21\xd1" + FCC_PRICE + b"\x01\x61" + b"\x21\xd1" + FCC_SFC + SFC_ANSWER + b"\x01\x71"
    assert kinds(read(line)) == [
        "Command",
        "StatusReply",
        "MasterData",
        "Command",
        "StatusReply",
        "Command",
        "StatusReply",
        "MasterData",
        "Rejected:unexpected",
        "Command",
        "StatusReply",
    ]


def test_relay_sides_tell_who_sent_what() -> None:
    reader = LineReader()
    assert kinds(reader.receive(b"\x61", "master")) == ["Command"]  # from the POS: command 6
    assert kinds(reader.receive(b"\x61" + RUNNING, "pump")) == ["Echo", "RunningReply"]
    assert kinds(reader.receive(b"\x01", "master")) == ["Command"]
    assert kinds(reader.receive(b"\x01", "pump")) == ["Echo"]
    assert kinds(reader.receive(b"\x02", "master")) == ["Command"]  # pump 1 never answered
    assert kinds(reader.receive(b"\x02\x62", "pump")) == ["Echo", "StatusReply"]
    assert kinds(reader.receive(b"\x21", "master") + reader.receive(b"\x21\xd1", "pump")) == [
        "Command",
        "Echo",
        "StatusReply",
    ]
    assert kinds(reader.receive(FCC_PRICE, "master") + reader.receive(FCC_PRICE, "pump")) == [
        "MasterData",
        "Echo",
    ]


def test_a_reply_cut_by_the_other_side_is_truncated() -> None:
    reader = LineReader()
    reader.receive(b"\x41", "master")
    items = reader.receive(b"\x41" + CAPTURED_TXN[:8], "pump") + reader.receive(b"\x01", "master")
    assert kinds(items) == ["Echo", "Rejected:truncated", "Command"]


def test_noise_in_every_place() -> None:
    assert kinds(read(b"\x01\x72\x61")) == ["Command", "Rejected:unexpected", "StatusReply"]
    assert kinds(read(b"\x01\x62")) == ["Command", "Command"]  # 62: pump 2's command 6
    assert kinds(read(b"\x41\xe3\xe4" + CAPTURED_TXN)) == [
        "Command",
        "Rejected:garbage",
        "DataReply",
    ]
    assert kinds(read(b"\x41" + CAPTURED_TXN[:9] + b"\x01\x61")) == [
        "Command",
        "Rejected:bad_message",
        "Command",
        "StatusReply",
    ]
    assert kinds(read(b"\x61" + RUNNING[:3] + b"\x01\x61")) == [
        "Command",
        "Rejected:bad_message",
        "Command",
        "StatusReply",
    ]
    assert kinds(read(b"\xe1\xf6\xfc")) == ["Rejected:garbage", "Command"]  # FC: all stop
    assert kinds(read(b"\x41" + CAPTURED_TXN[:20])) == ["Command", "Rejected:truncated"]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.sampled_from([b"\x01", b"\x61", b"\x41", b"\x21\xd1", CAPTURED_TXN, FCC_PRICE, RUNNING])
        | st.binary(max_size=6),
        max_size=12,
    ),
    st.sampled_from([None, "pump", "master"]),
    st.integers(1, 40),
)
def test_every_byte_is_in_exactly_one_item(pieces: list[bytes], source: Source, chunk: int) -> None:
    data = b"".join(pieces)
    items = read(data, source, chunk=chunk)
    offset = 0
    for item in items:
        assert item.offset == offset, items
        offset += size(item)
    assert offset == len(data)
    if source is None:  # garbage and echoes are reported as they arrive: runs split
        whole = read(data, source)
        runs = (Rejected, Echo)
        assert [i for i in items if not isinstance(i, runs)] == [
            i for i in whole if not isinstance(i, runs)
        ]
        echoed = [sum(i.size for i in got if isinstance(i, Echo)) for got in (items, whole)]
        assert echoed[0] == echoed[1]
