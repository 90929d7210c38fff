"""Compact stored rows (schema v3, buffer/codec.py) and the way back (buffer/migrate.py).

≤ 300 B of flash per stored order, so that A9 (30 days of a busy
station offline) fits the default cap: store migrations reversible
for one step. What is checked: the stored form gives back exactly the bytes
the v2 row held (so chains, resends and the platform see no difference), the
dictionaries are frozen, a store goes v3 → v2 → v3 with every record, sent
state and chain intact, and the size goal holds on realistic orders.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from buffer.codec import DICTIONARIES, BodyError, cut_prev, decode, encode, to_text
from buffer.migrate import downgrade_to_v2, main
from buffer.store import OrderStore
from collector.tools.verify import first_breaks
from records.canonical import canonical_json
from records.chain import GENESIS, verify_chain
from records.sm3 import sm3_hex

#: SM3 (first 16 hex) of each shipped dictionary: stored rows name them by id,
#: so their bytes may never change (a new dictionary takes a new id).
FROZEN = {
    0: "1ab21d8355cfa17f",
    1: "fdc9a574e5765938",
    2: "0cccccfb3d71cd5d",
    3: "0f01db15247a7b9f",
    4: "2d4c5d1658b7ef93",
    5: "c9022e4c2a687d5a",
    6: "79e420fe557db207",
}


def test_the_shipped_dictionaries_never_change() -> None:
    assert {k: sm3_hex(v)[:16] for k, v in DICTIONARIES.items()} == FROZEN


def realistic(n: int) -> dict[str, Any]:
    """An order as collector/station/records.py order_fields builds it (Sinopec,
    with totalizers)."""
    return {
        "nozzle_uid": None,
        "order_no": str(40000 + n),
        "station": "GD-SZ-000123",
        "grade": "92" if n % 3 else "95",
        "price": "7.89" if n % 3 else "8.41",
        "volume": f"{10 + n % 50}.{n % 100:02d}",
        "amount": f"{(10 + n % 50) * 7.89:.2f}",
        "totalizer_volume_start": f"{1234567 + n * 31}.25",
        "totalizer_volume_end": f"{1234567 + n * 31 + 30}.25",
        "totalizer_amount_start": f"{9734567 + n * 231}.10",
        "totalizer_amount_end": f"{9734567 + n * 231 + 230}.10",
        "started_at": f"2026-11-22T10:{n % 60:02d}:01.000+08:00",
        "ended_at": f"2026-11-22T10:{n % 60:02d}:59.000+08:00",
        "flags": ["AMOUNT_MISMATCH"] if n % 97 == 0 else [],
    }


def test_an_order_costs_at_most_300_bytes_of_flash_even_unsent(tmp_path: Path) -> None:
    """The A9 sizing figure (docs/store.md): file bytes / orders, 64 nozzles,
    nothing acknowledged (the 30-day outage case: the unsent index is full)."""
    path = tmp_path / "s.sqlite"
    store = OrderStore(path)
    nozzles = [f"p{p:02d}.a1.n{n}" for p in range(1, 33) for n in (1, 2)]
    total = 6400
    for start in range(0, total, 200):
        store.append_orders(
            [(nozzles[i % 64], realistic(i), f"{i}:1") for i in range(start, start + 200)]
        )
    store.close()
    per_order = path.stat().st_size / total
    assert per_order <= 300, f"{per_order:.0f} B per stored order"


def test_published_text_is_byte_for_byte_what_v2_stored(tmp_path: Path) -> None:
    store = OrderStore(tmp_path / "s.sqlite")
    prev = GENESIS
    for i in range(1, 30):
        stored = store.append_order("p01.a1.n1", realistic(i), source_key=str(i))
        assert stored is not None
        record = {**realistic(i), "rid": f"p01.a1.n1:{i}", "nozzle": "p01.a1.n1", "nseq": i}
        record["prev"] = prev
        hashed = canonical_json(record)
        prev = sm3_hex(hashed)
        v2_text = f'{hashed.decode()[:-1]},"h":"{prev}"}}'
        (page,) = [r for r in store.unsent_page(0, 100) if r.id == stored.id]
        assert page.text == v2_text
    assert verify_chain(store.orders("p01.a1.n1")) is None


fields_strategy = st.dictionaries(
    st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=12).filter(
        lambda k: k not in {"rid", "nozzle", "nseq", "prev", "h", "resent"}
    ),
    st.one_of(
        st.none(),
        st.text(max_size=30),
        st.integers(-(2**40), 2**40),
        st.lists(st.text(max_size=8), max_size=3),
        st.dictionaries(st.sampled_from(["prev", "a", "z"]), st.text(max_size=70), max_size=2),
    ),
    max_size=8,
)


@settings(max_examples=150, deadline=None)
@given(fields=fields_strategy, prev_seed=st.binary(min_size=32, max_size=32))
def test_any_record_round_trips_exactly(fields: dict[str, Any], prev_seed: bytes) -> None:
    """Also with a nested object holding its own "prev" before the top-level one."""
    record = {**fields, "rid": "n:1", "nozzle": "n", "nseq": 1, "prev": prev_seed.hex()}
    hashed = canonical_json(record)
    h = sm3_hex(hashed)
    stored, prev = cut_prev(hashed, prev_seed.hex())
    text = to_text(encode("order", stored), bytes.fromhex(h), prev)
    assert text == f'{hashed.decode()[:-1]},"h":"{h}"}}'
    assert json.loads(text)["prev"] == prev_seed.hex()


@pytest.mark.parametrize("kind", ["tank", "alarm", "nozzle", "delivery", "leak", "unknown"])
def test_other_kinds_round_trip(kind: str) -> None:
    text = canonical_json({"rid": f"{kind}:1", "at": "2026-11-22T10:00:00.000+08:00", "x": "é"})
    assert decode(encode(kind, text)) == text.decode()


def test_damaged_bodies_are_a_clear_error() -> None:
    good = encode("order", b'{"a":"b"}')
    for bad in (b"", bytes([99]) + good[1:], good[:1] + b"\xff\xff\xff", good[:-2]):
        with pytest.raises(BodyError):
            decode(bad)


def _texts(path: Path) -> list[tuple[int, str, int | None, int]]:
    """(id, full published text, sent_ms, resent) of every row, either schema."""
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT * FROM records ORDER BY id").fetchall()
        names = [d[0] for d in db.execute("SELECT * FROM records LIMIT 0").description]
    out = []
    for row in rows:
        r = dict(zip(names, row, strict=True))
        out.append((r["id"], to_text(r["body"], r["h"], r.get("prev")), r["sent_ms"], r["resent"]))
    return out


def test_v3_to_v2_and_back_keeps_every_record_and_chain(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    store = OrderStore(path)
    for i in range(1, 41):
        store.append_order(f"p01.a1.n{i % 2 + 1}", realistic(i), source_key=str(i))
        if i % 10 == 0:
            store.append_record("alarm", f"p01:PORT_OFFLINE:{i}", {"code": "PORT_OFFLINE"})
    store.mark_published(store.unsent_page(0, 20))
    store.request_resend(nozzle="p01.a1.n1", to_nseq=3)
    store.close()
    before = _texts(path)

    assert main(["downgrade", str(path)]) == 0
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == 2
        types = set(db.execute("SELECT DISTINCT typeof(body) || typeof(h) FROM records"))
        assert types <= {("texttext",), ("textnull",)}, types  # what v2 code reads
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert _texts(path) == before
    assert downgrade_to_v2(path) == 0, "already v2: nothing to do"

    store = OrderStore(path)  # forward again: 2 → 3, rows stay as v2 wrote them
    assert [json.loads(t) for _, t, _, _ in _texts(path)] == [
        json.loads(t) for _, t, _, _ in before
    ]
    nxt = store.append_order("p01.a1.n1", realistic(99), source_key="99")
    assert nxt is not None and nxt.body["nseq"] == 21
    with sqlite3.connect(path) as db:
        breaks, counts = first_breaks(db)
    assert breaks == {} and counts == {"p01.a1.n1": 21, "p01.a1.n2": 20}
    unsent = store.unsent(0, 100)
    assert [r.rid for r in unsent][:3] == ["p01.a1.n1:1", "p01.a1.n1:2", "p01.a1.n1:3"]
    assert all(r.resent for r in unsent[:3])
    store.close()


def test_downgrade_refuses_what_it_does_not_know(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA user_version=7")
    assert main(["downgrade", str(path)]) == 2
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == 7
