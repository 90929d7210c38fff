"""Changkong Uninfo words, layouts and readers (protocols/uninfo/messages.py, framer.py).

Frames come from ``fangym0335/first src/lischn011.c`` (tests/uninfo_source.py:
the FCC's layouts and an independent transliteration of ``src/lrc.c``);
every recovery case of the framer's docstring has its test here.
"""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from hil.dispenser.uninfo import display_words, sale_words, totals_words
from protocols.events import ProtocolError
from protocols.uninfo.framer import (
    MAX_BUFFER,
    BusReader,
    Reply,
    ReplyReader,
    Request,
    RequestReader,
    request_of,
)
from protocols.uninfo.messages import (
    GradeTotals,
    SaleRecord,
    build_block,
    digit_words,
    lrc_nibble,
    parse_sale,
    parse_totals,
    request_byte,
)
from tests.uninfo_source import (
    c_lrc,
    c_lrc_ck,
    fcc_display,
    fcc_preset_block,
    fcc_price_block,
    fcc_sale,
    fcc_totals,
    fcc_value,
)

#: The FCC's sale of pump 3 (``:1191-1210``): 7.85 yuan/L, 25.00 L, 196.25 yuan.
SALE = fcc_sale(3, 785, 2500, 19625)
#: Its totals for two nozzles (``:1276-1345``): nozzle 2 sold it.
TOTALS = fcc_totals([(1, 9_282_232, 72_866_521, 785), (2, 10_724_828, 88_176_077, 836)])


def replies(reader: ReplyReader | BusReader, data: bytes) -> list[Reply | ProtocolError]:
    return [i for i in reader.receive_data(data) if not isinstance(i, Request)]


# ---------------------------------------------------------------- the source's frames


def test_the_check_word_is_lrc_c_s_whatever_the_words() -> None:
    rng = random.Random(5)
    for _ in range(200):
        words = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 90)))
        assert lrc_nibble(words) == c_lrc(words) & 0x0F == c_lrc_ck(words)


def test_requests_are_one_byte_command_and_pump_nibble() -> None:
    # :1626 A0|p, :1534 80|p, :1276 B0|p, :1364 C0|p; pump 16 is nibble 0 (:113-114)
    assert [request_byte(c, 3) for c in (0xA, 0x8, 0xB, 0xC)] == [0xA3, 0x83, 0xB3, 0xC3]
    assert request_byte(0xA, 16) == 0xA0 and request_of(0xA0).address == 16
    assert request_of(0xFE) == Request(0x7, None, b"\xfe")  # stop every pump, :1423


def test_the_fccs_sale_record_reads_to_its_documented_values() -> None:
    assert (fcc_value(SALE, 19, 6), fcc_value(SALE, 27, 8), fcc_value(SALE, 37, 8)) == (
        785,
        2500,
        19625,
    )
    assert parse_sale(SALE) == SaleRecord(address=3, price=785, volume=2500, amount=19625)
    reader = ReplyReader()
    reader.expect(request_of(0xC3))
    [reply] = replies(reader, SALE)
    assert isinstance(reply, Reply) and reply.value == parse_sale(SALE)


def test_the_fccs_totals_read_per_nozzle_with_the_codes_stride_of_40() -> None:
    assert len(TOTALS) == 84  # gunCnt * 40 + 4, :1278
    assert fcc_value(TOTALS, 1 + 40 + 3, 8) == 10_724_828  # p + 40, p[3..] (:1341, :1345)
    assert parse_totals(TOTALS) == (
        GradeTotals(1, 9_282_232, 72_866_521, 785),
        GradeTotals(2, 10_724_828, 88_176_077, 836),
    )


def test_status_bytes_read_as_the_fcc_reads_them() -> None:
    reader = ReplyReader()
    for byte, state in ((0x13, 1), (0x23, 2), (0x43, 4), (0x63, 6), (0x03, 0)):
        reader.expect(request_of(0xA3))
        [reply] = replies(reader, bytes([byte]))  # *status = cmd[0] >> 4, :1652
        assert isinstance(reply, Reply) and reply.value == state


def test_the_running_display_reads_amount_then_volume() -> None:
    reader = ReplyReader()
    reader.expect(request_of(0x83))
    [reply] = replies(reader, fcc_display(amount=3533, volume=450))
    assert isinstance(reply, Reply)
    assert (reply.value.amount, reply.value.volume) == (3533, 450)  # type: ignore[union-attr]


def test_the_controllers_blocks_are_the_sources_byte_for_byte() -> None:
    price = fcc_price_block(1, 0x0785)
    assert price.hex(" ").upper() == (
        "D1 FF E1 E6 FD E0 E0 E1 F5 E0 F3 E5 E8 E7 E0 E0 E0 E2 F4 E5 E8 E7 E0 E0 E0 E2 FC E8 F0"
    )
    fields = b"\xf5\xe0\xf3" + digit_words(785, 6) + b"\xe2\xf4" + digit_words(785, 6) + b"\xe2"
    assert build_block(1, 1, fields) == price
    preset = fcc_preset_block(2, bytes([0x00, 0x20, 0x00]), by_amount=False)
    [a, b] = RequestReader().receive_data(price + preset)
    assert isinstance(a, Request) and a.block is not None and a.block.function == 1
    assert (
        isinstance(b, Request) and b.block is not None and (b.address, b.block.function) == (2, 2)
    )


# ---------------------------------------------------------------- recovery


def test_bytes_with_no_request_are_one_garbage_error() -> None:
    [error] = ReplyReader().receive_data(b"\x13\x41\xe0")
    assert isinstance(error, ProtocolError) and error.kind == "garbage"
    [garbage, request] = RequestReader().receive_data(b"\x13\x41\xe0\xa1")
    assert isinstance(garbage, ProtocolError) and garbage.kind == "garbage"
    assert request == request_of(0xA1)


def test_the_echo_is_skipped_and_its_absence_counted() -> None:
    reader = ReplyReader(echo=True)
    reader.expect(request_of(0xA3))
    assert replies(reader, b"\xa3") == []
    [reply] = replies(reader, b"\x13")
    assert isinstance(reply, Reply) and reply.value == 1
    reader.expect(request_of(0xA3))
    [reply] = replies(reader, b"\x43")  # no echo: read as the reply
    assert isinstance(reply, Reply) and reply.value == 4
    assert (reader.counters["echoes"], reader.counters["echo_missing"]) == (1, 1)


def test_a_status_of_another_pump_is_unexpected_and_the_window_stays_open() -> None:
    reader = ReplyReader()
    reader.expect(request_of(0xA3))
    [error, reply] = replies(reader, b"\x14\x13")
    assert isinstance(error, ProtocolError) and error.kind == "unexpected"
    assert isinstance(reply, Reply) and reader.waiting is None


def test_a_reply_that_fails_its_check_closes_the_window() -> None:
    reader = ReplyReader()
    reader.expect(request_of(0xC3))
    hit = bytearray(SALE)
    hit[30] ^= 0x01
    [error] = replies(reader, bytes(hit))
    assert isinstance(error, ProtocolError) and error.kind == "bad_lrc"
    assert reader.waiting is None
    reader.expect(request_of(0xC4))
    [error] = replies(reader, SALE)  # a good record of another pump: :1398
    assert isinstance(error, ProtocolError) and error.kind == "unexpected"


def test_a_reply_cut_short_is_truncated_at_the_deadline() -> None:
    reader = ReplyReader()
    reader.expect(request_of(0xC3))
    assert replies(reader, SALE[:40]) == []
    [error] = reader.flush()
    assert isinstance(error, ProtocolError) and error.kind == "truncated"
    assert reader.buffered == 0 and reader.waiting is None


def test_totals_end_at_the_first_good_f0_of_4_plus_40_g_words() -> None:
    reader = ReplyReader()
    reader.expect(request_of(0xB3))
    assert replies(reader, TOTALS[:44]) == []  # F0 nowhere yet
    [reply] = replies(reader, TOTALS[44:])
    assert isinstance(reply, Reply) and len(reply.value) == 2  # type: ignore[arg-type]
    one = fcc_totals([(1, 5, 6, 785)])
    reader.expect(request_of(0xB3))
    [reply] = replies(reader, one)
    assert isinstance(reply, Reply) and len(reply.words) == 44


def test_a_bus_reader_finds_the_exchanges_a_missing_reply_swallowed() -> None:
    # C3 got no answer; its window takes the next exchanges, fails, and they
    # are read again from its second byte.
    stream = b"\xc3" + b"\xa3\x13\xb3" + TOTALS + b"\xc3" + SALE
    items = BusReader().receive_data(stream)
    good = [i for i in items if isinstance(i, Reply)]
    assert [r.request.raw for r in good] == [b"\xa3", b"\xb3", b"\xc3"]
    assert good[-1].value == parse_sale(SALE)


def test_a_request_while_a_status_is_awaited_means_no_answer() -> None:
    reader = BusReader()
    items = reader.receive_data(b"\xa3\xa4\x14")
    assert [type(i).__name__ for i in items] == ["Request", "Request", "Reply"]
    assert reader.counters["unanswered"] == 1


def test_a_data_block_that_fails_its_check_is_reported_and_the_next_found() -> None:
    block = bytearray(fcc_price_block(1, 0x0785))
    block[-2] ^= 0x01
    items = RequestReader().receive_data(bytes(block) + b"\xa1")
    assert isinstance(items[0], ProtocolError) and items[0].kind == "bad_lrc"
    assert items[-1] == request_of(0xA1)


# ---------------------------------------------------------------- properties


@settings(max_examples=60, deadline=None)
@given(
    st.integers(0, 999_999),
    st.integers(0, 99_999_999),
    st.integers(0, 99_999_999),
    st.integers(1, 16),
    st.integers(1, 30),
)
def test_sim_words_build_then_parse_round_trip(
    price: int, volume: int, amount: int, address: int, split: int
) -> None:
    words = sale_words(address, price, volume, amount)
    reader = BusReader()
    request = bytes([request_byte(0xC, address)])
    stream = request + words
    items = [
        i for k in range(0, len(stream), split) for i in reader.receive_data(stream[k : k + split])
    ]
    assert [type(i).__name__ for i in items] == ["Request", "Reply"]
    assert items[1].value == SaleRecord(address, price, volume, amount)  # type: ignore[union-attr]
    assert parse_sale(words) == SaleRecord(address, price, volume, amount)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 99_999_999), st.integers(0, 99_999_999))
def test_display_and_totals_words_round_trip(amount: int, volume: int) -> None:
    reader = ReplyReader()
    reader.expect(request_of(0x81))
    [reply] = replies(reader, display_words(amount, volume))
    assert isinstance(reply, Reply)
    assert (reply.value.amount, reply.value.volume) == (amount, volume)  # type: ignore[union-attr]
    assert c_lrc(totals_words([])[:-2]) & 0x0F == totals_words([])[-2] & 0x0F


@settings(max_examples=80, deadline=None)
@given(st.binary(max_size=400), st.sampled_from(["reply", "request", "bus"]))
def test_noise_never_raises_and_the_buffer_stays_bounded(noise: bytes, how: str) -> None:
    if how == "reply":
        reader: ReplyReader | RequestReader | BusReader = ReplyReader(echo=True)
        reader.expect(request_of(0xB1))  # type: ignore[union-attr]
    else:
        reader = RequestReader() if how == "request" else BusReader()
    for k in range(0, len(noise), 7):
        reader.receive_data(noise[k : k + 7])
        assert reader.buffered <= MAX_BUFFER
