"""GilbarcoPoller under arbitrary input: D20 (read-only) and the 35 000-case fuzz.

The pump in the fuzz answers as a loop does (protocols.md §4): the echo of
the command, then the reply in the real layouts; each reply then suffers at
most one mutation.
"""

from __future__ import annotations

import dataclasses
import functools
import random
from typing import NamedTuple

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from protocols.base import ForbiddenCommand
from protocols.events import Event, Sale
from protocols.gilbarco.codes import nibble_pump
from protocols.gilbarco.driver import GilbarcoPoller
from protocols.gilbarco.line import LineReader
from protocols.gilbarco.messages import (
    Decimals,
    GradeTotals,
    SaleParts,
    TotalsData,
    TransactionData,
    encode_frame,
    running_words,
    sale_of,
    totals_body,
    transaction_body,
)
from tests.test_gilbarco_driver import BAD_LRC, EPOCH, TOT, TXN, expected_sale, only, st_byte

# ---------------------------------------------------------------- D20


@pytest.mark.parametrize("command", [c for c in range(-1, 0x20) if c not in (0x0, 0x4, 0x5, 0x6)])
def test_emitting_anything_else_is_forbidden(command: int) -> None:
    with pytest.raises(ForbiddenCommand):
        GilbarcoPoller([1])._emit(command, 1)


def test_emitting_to_a_pump_not_polled_is_forbidden() -> None:
    driver = GilbarcoPoller([1, 2])
    assert driver._emit(0x4, 2) == b"\x42"
    for pump in (0, 3, 16, 17):
        with pytest.raises(ForbiddenCommand):
            driver._emit(0x0, pump)


PUMPS = [1, 16]
replies = st.one_of(
    st.binary(max_size=60),
    st.sampled_from([TXN, TOT, BAD_LRC, TXN[:9], TOT + TXN, running_words(12), b"\x01" + TXN]),
    st.builds(lambda s, p: st_byte(s, p), st.integers(0, 15), st.sampled_from([1, 16, 2])),
)
operations = st.lists(
    st.one_of(
        st.tuples(st.just("turn"), replies),
        st.tuples(st.just("bytes"), replies),
        st.tuples(st.just("timeout"), st.none()),
        st.tuples(st.just("request"), st.none()),
        st.tuples(st.just("commit"), st.integers(0, 9)),
        st.tuples(st.just("foreign_commit"), st.integers(0, 20)),
    ),
    max_size=50,
)


@settings(max_examples=1000, deadline=None)
@given(operations)
def test_d20_only_allowed_commands_ever_leave(ops: list[tuple[str, object]]) -> None:
    driver = GilbarcoPoller(PUMPS, offline_after=2)
    sales: list[Sale] = []
    for op, arg in ops:
        events: list[Event] = []
        if op in ("turn", "request"):
            request = driver.next_request()
            assert request is not None and len(request) == 1
            assert request[0] >> 4 in {0x0, 0x4, 0x5, 0x6}
            assert nibble_pump(request[0]) in PUMPS
        if op in ("turn", "bytes"):
            assert isinstance(arg, bytes)
            events = driver.receive_data(arg)
        elif op == "timeout":
            events = driver.response_timeout()
        elif op == "commit" and sales:
            assert isinstance(arg, int)
            driver.sale_committed(sales[arg % len(sales)])
        elif op == "foreign_commit":
            assert isinstance(arg, int)
            driver.sale_committed(dataclasses.replace(expected_sale(arg, EPOCH), key=str(arg)))
        sales += only(events, Sale)
    assert all(s == expected_sale(s.address, s.ended_at) for s in sales)


# ---------------------------------------------------------------- fuzz


def _grade_totals(grade: int, volume: int, money: int) -> TotalsData:
    grades = {g: GradeTotals(g, (volume + 7 * g) % 10**8, (money + g) % 10**8) for g in (1, 2, 3)}
    grades[grade] = GradeTotals(grade, volume, money)
    return TotalsData(tuple(grades.values()))


Pair = tuple[TransactionData, TotalsData]
true_sales = st.lists(
    st.builds(
        lambda g, p, v, m, tv, tm: (TransactionData(0, g, p, v, m), _grade_totals(g, tv, tm)),
        st.integers(1, 3),
        st.integers(0, 9999),
        st.integers(0, 999_999),
        st.integers(0, 999_999),
        st.integers(0, 10**8 - 1),
        st.integers(0, 10**8 - 1),
    ),
    min_size=1,
    max_size=2,
)

#: Requests per fuzz scenario: a read takes 4, so up to 5 reads; more only
#: repeats the same situations at the cost of the 60 s budget.
MAX_TURNS = 20

#: What the pump shows on a status poll (A and B three times: reads are what we fuzz).
STATUSES = (0xA, 0xA, 0xA, 0xB, 0xB, 0xB, 0x9, 0x6, 0x7, 0xC, 0xD, 0x0)
#: Half the replies arrive intact, so that reads also complete; the rest
#: suffer one mutation each.
MUTATIONS = ("none",) * 7 + ("flip", "set", "drop", "insert", "cut", "random", "append")


class Turn(NamedTuple):
    """One request's reply, all choices packed in one integer.

    One integer per turn (not a tuple of strategies) keeps a turn cheap to
    draw; in the structured test, shrinking still moves every choice towards
    0 = status A, no mutation, no split.
    """

    status: int  # shown on a status poll
    sale: int  # which true sale is shown from then on (2: none)
    split: int  # the reply arrives in two reads, cut here
    commit: bool  # commit the sales this turn brings
    mutation: str  # at most one per reply
    pos: int
    value: int  # the bit (flip) or byte (set, insert)
    blob: bytes  # random bytes (random, append)

    @classmethod
    def of(cls, x: int) -> Turn:
        x, status = divmod(x, len(STATUSES))
        x, sale = divmod(x, 3)
        x, split = divmod(x, 41)
        x, commit = divmod(x, 2)
        x, mutation = divmod(x, len(MUTATIONS))
        x, pos = divmod(x, 64)
        x, value = divmod(x, 256)
        kind = MUTATIONS[mutation]
        blob = random.Random(x).randbytes(x % 31) if kind in ("random", "append") else b""
        return cls(STATUSES[status], sale, split, bool(commit), kind, pos, value, blob)

    def mutate(self, reply: bytes) -> bytes:
        pos, kind = self.pos % (len(reply) + 1), self.mutation
        if kind == "flip" and pos < len(reply):
            return reply[:pos] + bytes([reply[pos] ^ (1 << self.value % 8)]) + reply[pos + 1 :]
        if kind == "set" and pos < len(reply):
            return reply[:pos] + bytes([self.value]) + reply[pos + 1 :]
        if kind == "drop":
            return reply[:pos] + reply[pos + 1 :]
        if kind == "insert":
            return reply[:pos] + bytes([self.value]) + reply[pos:]
        if kind == "cut":
            return reply[:pos]
        if kind == "random":
            return self.blob
        if kind == "append":
            return reply + self.blob
        return reply


def _digits(rng: random.Random, count: int) -> int:
    """Boundary values half the time (as hypothesis would), else uniform."""
    top = 10**count - 1
    pick = rng.randrange(10)
    return (0, 1, 10, top, top - 1)[pick] if pick < 5 else rng.randrange(top + 1)


def _random_pair(rng: random.Random) -> Pair:
    grade = rng.randint(1, 3)
    txn = TransactionData(0, grade, _digits(rng, 4), _digits(rng, 6), _digits(rng, 6))
    return txn, _grade_totals(grade, _digits(rng, 8), _digits(rng, 8))


@functools.lru_cache(maxsize=64)
def _frames(pair: Pair, pump: int) -> tuple[bytes, bytes]:
    """Pump ``pump``'s replies to 4 and 5 for ``pair``, built once."""
    txn = dataclasses.replace(pair[0], pump=pump)
    return encode_frame(transaction_body(txn)), encode_frame(totals_body(pair[1]))


def _truth(by_pump: dict[int, list[Pair]]) -> set[Sale]:
    """Every Sale the pumps hold (ended_at: the fuzz clock, raw left out)."""
    truth = set()
    for pump, pairs in by_pump.items():
        for txn, tot in pairs:
            grade = tot.of(txn.grade)
            assert grade is not None
            parts = SaleParts(dataclasses.replace(txn, pump=pump), grade)
            truth.add(sale_of(pump, parts, EPOCH, Decimals()))
    return truth


def run_fuzz(sales: tuple[list[Pair], list[Pair]], script: list[int]) -> None:
    """A pump plays honestly; each reply suffers at most one mutation (a bit
    flipped, a byte set / dropped / inserted, cut short, replaced by random
    bytes, random bytes appended). Nothing raises, and every Sale out is one
    the pump holds, every field exact."""
    by_pump = dict(zip(PUMPS, sales, strict=True))
    shown: dict[int, Pair | None] = dict.fromkeys(PUMPS)
    driver = GilbarcoPoller(PUMPS, clock=lambda: EPOCH)
    tap = LineReader()  # the same bytes as a tap reads them: it must not raise either
    for t in map(Turn.of, script):
        request = driver.next_request()
        assert request is not None and request[0] >> 4 in (0x0, 0x4, 0x5, 0x6)
        pump, command = nibble_pump(request[0]), request[0] >> 4
        if command == 0:
            pairs = by_pump[pump]
            shown[pump] = pairs[t.sale] if t.sale < len(pairs) else None
            reply = st_byte(t.status, pump)
        elif command == 6:
            reply = running_words(t.value)
        elif (pair := shown[pump]) is None:
            reply = b""
        else:
            reply = _frames(pair, pump)[command == 5]
        reply = t.mutate(request + reply)  # the loop's echo, then the reply
        tap.receive(reply)
        events = driver.receive_data(reply[: t.split])
        if len(reply) > t.split:
            events += driver.receive_data(reply[t.split :])
        if driver.awaiting_response:
            events += driver.response_timeout()
        for sale in only(events, Sale):
            assert dataclasses.replace(sale, raw=b"") in _truth(by_pump)
            if t.commit:
                driver.sale_committed(sale)


@settings(max_examples=35_000, deadline=None)
@given(st.integers(0, 2**64 - 1))
@example(251892286)  # the same E0 dropped inside a totalizer in both readings
def test_fuzz_mutated_replies_never_raise_nor_invent_a_sale(seed: int) -> None:
    """The main fuzz: 35 000 scenarios. Hypothesis draws one seed per example
    (a structured draw of 20 turns costs ~4 ms per example in hypothesis
    alone, 35 000 of them minutes); the scenario comes from ``random`` with
    it: sales with boundary-biased values, up to MAX_TURNS turns (:class:`Turn`).
    A failure prints the seed, which reproduces it."""
    rng = random.Random(seed)
    sales = (
        [_random_pair(rng) for _ in range(rng.randint(1, 2))],
        [_random_pair(rng) for _ in range(rng.randint(1, 2))],
    )
    run_fuzz(sales, [rng.getrandbits(64) for _ in range(rng.randint(0, MAX_TURNS))])


@settings(max_examples=1500, deadline=None)
@given(st.tuples(true_sales, true_sales), st.lists(st.integers(0, 2**64 - 1), max_size=MAX_TURNS))
def test_fuzz_structured_and_shrinkable(
    sales: tuple[list[Pair], list[Pair]], script: list[int]
) -> None:
    """The same property with every choice drawn by hypothesis, so a failure
    shrinks to a minimal scenario (it found a dropped money digit accepted, see
    messages.TRANSACTION_LEN)."""
    run_fuzz(sales, script)
