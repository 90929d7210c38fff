"""Editing a stored row behind the collector's back, as a tamperer would (SPEC F2).

Store bodies are compressed (buffer/codec.py, schema v3), so a plain SQL
``replace()`` no longer reaches the text: these helpers inflate the row,
edit the text and deflate it again — what anyone who reads the (public)
codec can do with the sqlite3 shell and a few lines of Python.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from buffer.codec import decode, encode


def edit_order_text(db: sqlite3.Connection, nozzle: str, nseq: int, old: str, new: str) -> None:
    """Replace ``old`` by ``new`` in the stored text of one order (h left as it was)."""
    (body,) = db.execute(
        "SELECT body FROM records WHERE kind='order' AND nozzle=? AND nseq=?", (nozzle, nseq)
    ).fetchone()
    text = decode(body)
    assert old in text, f"{old!r} not in the stored order {nozzle}:{nseq}"
    db.execute(
        "UPDATE records SET body=? WHERE kind='order' AND nozzle=? AND nseq=?",
        (encode("order", text.replace(old, new).encode()), nozzle, nseq),
    )


def stored_texts(db: sqlite3.Connection, kind: str) -> list[str]:
    """The full published text of every stored record of ``kind``, in store order."""
    from buffer.codec import to_text

    rows = db.execute("SELECT body, h, prev FROM records WHERE kind=? ORDER BY id", (kind,))
    return [to_text(body, h, prev) for body, h, prev in rows]


def damage_pages(path: Path, orders: int = 300) -> bytes:
    """A closed store of ours with ``orders`` orders, every page after the
    first overwritten with garbage: its header (page 1) still says it is ours,
    its records are gone — what a torn write on flash leaves. Returns the bytes."""
    from buffer.schema import PAGE_SIZE
    from buffer.store import OrderStore

    store = OrderStore(path)
    for i in range(orders):
        store.append_order("p01.a1.n1", {"order_no": str(i), "pad": "x" * 40}, source_key=str(i))
    store.close()  # checkpointed: every page is in the file itself
    size = path.stat().st_size
    assert size > 2 * PAGE_SIZE, "a store of more than one page"
    with open(path, "r+b") as f:
        f.seek(PAGE_SIZE)
        f.write(bytes((7 * i + 13) % 256 for i in range(size - PAGE_SIZE)))
    return path.read_bytes()
