"""The per-nozzle SM3 chain: what it covers, and where it shows a break."""

from __future__ import annotations

from typing import Any

import pytest
from gmssl.sm3 import sm3_hash

from records.chain import (
    GENESIS,
    HASH_EXCLUDED,
    REASON_ALTERED,
    REASON_GENESIS,
    REASON_PREV,
    ChainBreak,
    record_hash,
    seal_record,
    verify_chain,
)

NOZZLE = "p03.a1.n2"


def _order(nseq: int) -> dict[str, Any]:
    return {
        "rid": f"{NOZZLE}:{nseq}",
        "nozzle": NOZZLE,
        "nseq": nseq,
        "grade": "0092",
        "station": "加油站 7",
        "volume": f"{nseq}.00",
        "amount": f"{nseq * 7}.85",
        "flags": [],
        "nozzle_uid": None,
        "resent": False,
    }


def _chain(n: int, first: int = 1) -> list[dict[str, Any]]:
    records, prev = [], GENESIS
    for nseq in range(first, first + n):
        record = seal_record(_order(nseq), prev)
        records.append(record)
        prev = record["h"]
    return records


def test_a_chain_of_five_verifies() -> None:
    chain = _chain(5)
    assert verify_chain(chain) is None
    assert chain[0]["prev"] == GENESIS == "0" * 64
    assert [r["prev"] for r in chain[1:]] == [r["h"] for r in chain[:-1]]
    assert verify_chain([]) is None


def test_h_is_sm3_of_the_canonical_record_without_h_and_resent() -> None:
    record = seal_record({"rid": "n:1", "nseq": 1, "station": "站", "resent": True}, GENESIS)
    canonical = '{"nseq":1,"prev":"' + GENESIS + '","rid":"n:1","station":"站"}'
    # gmssl as an independent SM3.
    assert record["h"] == sm3_hash(list(canonical.encode("utf-8")))
    assert record["h"] == record_hash(record)
    assert frozenset({"h", "resent"}) == HASH_EXCLUDED


def test_seal_record_copies_and_replaces_an_old_h() -> None:
    original = _order(1) | {"h": "stale"}
    sealed = seal_record(original, GENESIS)
    assert original["h"] == "stale" and "prev" not in original
    assert sealed["h"] == record_hash(sealed) != "stale"


@pytest.mark.parametrize("prev", ["", "0" * 63, "A" * 64, "g" * 64])
def test_seal_record_refuses_a_prev_that_is_not_an_h(prev: str) -> None:
    with pytest.raises(ValueError, match="prev must be 64 lowercase hex digits"):
        seal_record(_order(1), prev)


@pytest.mark.parametrize("index", [0, 2, 4])
def test_an_edited_field_is_a_hash_mismatch_at_that_record(index: int) -> None:
    chain = _chain(5)
    chain[index]["volume"] = "99.00"
    assert verify_chain(chain) == ChainBreak(index, f"{NOZZLE}:{index + 1}", REASON_ALTERED)
    assert REASON_ALTERED == "hash mismatch: record altered"


def test_an_edit_with_a_recomputed_h_breaks_the_next_link() -> None:
    chain = _chain(5)
    chain[2]["volume"] = "99.00"
    chain[2]["h"] = record_hash(chain[2])
    assert verify_chain(chain) == ChainBreak(3, f"{NOZZLE}:4", REASON_PREV)
    assert REASON_PREV == "prev does not match previous h: record missing or altered"


@pytest.mark.parametrize("index", [1, 2, 3])
def test_a_deleted_record_breaks_the_chain_at_the_next(index: int) -> None:
    chain = _chain(5)
    del chain[index]
    assert verify_chain(chain) == ChainBreak(index, f"{NOZZLE}:{index + 2}", REASON_PREV)


def test_flipping_resent_does_not_break_the_chain() -> None:
    chain = _chain(5)
    before = [record_hash(r) for r in chain]
    for record in chain[1:4]:
        record["resent"] = True
    del chain[4]["resent"]
    assert [record_hash(r) for r in chain] == before
    assert verify_chain(chain) is None


def test_a_window_not_starting_at_nseq_1_is_not_checked_against_genesis() -> None:
    window = _chain(6)[2:]
    assert window[0]["nseq"] == 3
    assert verify_chain(window) is None


def test_nseq_1_must_start_from_genesis() -> None:
    first = seal_record(_order(1), "ab" * 32)
    assert verify_chain([first]) == ChainBreak(0, f"{NOZZLE}:1", REASON_GENESIS)


def test_a_value_that_cannot_be_canonical_is_an_alteration() -> None:
    chain = _chain(3)
    chain[1]["volume"] = 2.0
    broken = verify_chain(chain)
    assert broken is not None
    assert (broken.index, broken.rid) == (1, f"{NOZZLE}:2")
    assert broken.reason.startswith(REASON_ALTERED)
