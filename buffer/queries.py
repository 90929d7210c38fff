"""The store's queries: stored records read back for the collector's own checks.

A mixin of :class:`buffer.store.OrderStore`: the edge checks' last order
(SPEC A1, A7), a nozzle's last identity (A6), the wet-stock sales (A8),
whether a record was acknowledged (``config.set``), the watchdog's ping, and
whole kinds in store order. Nothing here writes.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from buffer.codec import to_text


class StoreQueries:
    """Reads of committed records (OrderStore's part); every body through ``to_text``."""

    _db: sqlite3.Connection

    if TYPE_CHECKING:

        def _failing(self, what: str) -> AbstractContextManager[None]: ...

    def orders(self, nozzle: str | None = None) -> Iterator[dict[str, Any]]:
        """Stored orders (one nozzle, or all) in nozzle then nseq order."""
        if nozzle is None:
            cur = self._db.execute(
                "SELECT body, h, prev FROM records WHERE kind='order' ORDER BY nozzle, nseq"
            )
        else:
            cur = self._db.execute(
                "SELECT body, h, prev FROM records WHERE kind='order' AND nozzle=? ORDER BY nseq",
                (nozzle,),
            )
        for body, h, prev in cur:
            yield json.loads(to_text(body, h, prev))

    def order_volume_since(self, nozzles: Iterable[str], since_ms: int) -> Decimal:
        """Litres sold by ``nozzles`` in the orders committed at or after ``since_ms``.

        Summed as :class:`~decimal.Decimal` from the orders' decimal strings,
        so the wet-stock balance (SPEC A8) is exact to the dispensers' digits.
        """
        keys = sorted(set(nozzles))
        if not keys:
            return Decimal(0)
        marks = ",".join("?" * len(keys))
        rows = self._db.execute(
            "SELECT body, h, prev FROM records WHERE kind='order' "
            f"AND nozzle IN ({marks}) AND created_ms >= ?",
            (*keys, since_ms),
        ).fetchall()
        # Inflated here, not json_extract'ed in SQL: bodies are compressed (v3).
        volumes = (json.loads(to_text(*row)).get("volume") for row in rows)
        return sum((Decimal(str(v)) for v in volumes if v is not None), Decimal(0))

    def ping(self) -> bool:
        """True when the database answers a read (the watchdog's store check)."""
        try:
            return self._db.execute("SELECT count(*) FROM meta").fetchone() is not None
        except sqlite3.Error:
            return False

    def last_order(self, nozzle: str) -> dict[str, Any] | None:
        """The newest order of ``nozzle`` (highest nseq), or None: the edge checks'
        reference after a restart (SPEC A1)."""
        with self._failing("read the last order"):
            row = self._db.execute(
                "SELECT body, h, prev FROM records WHERE kind='order' AND nozzle=? "
                "ORDER BY nseq DESC LIMIT 1",
                (nozzle,),
            ).fetchone()
        return None if row is None else dict(json.loads(to_text(*row)))

    def last_order_under(self, prefix: str) -> dict[str, Any] | None:
        """The newest order of any nozzle whose key starts with ``prefix`` (a pump:
        ``"p01.a1."``), by commit order: the pump counter check's reference (A7)."""
        # A range on the indexed key instead of LIKE: '/' sorts right after '.'.
        upper = prefix[:-1] + chr(ord(prefix[-1]) + 1)
        with self._failing("read the last order"):
            row = self._db.execute(
                "SELECT body, h, prev FROM records WHERE kind='order' "
                "AND nozzle >= ? AND nozzle < ? ORDER BY id DESC LIMIT 1",
                (prefix, upper),
            ).fetchone()
        return None if row is None else dict(json.loads(to_text(*row)))

    def last_record_under(self, kind: str, rid_prefix: str) -> dict[str, Any] | None:
        """The newest record of ``kind`` whose rid starts with ``rid_prefix``
        (a nozzle's last identity: ``"p01.a1.n1:components:"``), or None."""
        upper = rid_prefix[:-1] + chr(ord(rid_prefix[-1]) + 1)
        with self._failing("read the last record"):
            row = self._db.execute(
                "SELECT body, h, prev FROM records WHERE kind=? AND rid >= ? AND rid < ? "
                "ORDER BY id DESC LIMIT 1",
                (kind, rid_prefix, upper),
            ).fetchone()
        return None if row is None else dict(json.loads(to_text(*row)))

    def is_published(self, kind: str, rid: str) -> bool | None:
        """Whether the record ``(kind, rid)`` was acknowledged by the broker
        (None: no such record). ``config.set`` confirms a change on it."""
        with self._failing("read a record's state"):
            row = self._db.execute(
                "SELECT sent_ms FROM records WHERE kind=? AND rid=?", (kind, rid)
            ).fetchone()
        return None if row is None else row[0] is not None

    def records(self, kind: str) -> Iterator[dict[str, Any]]:
        """Stored records of one kind, in store order."""
        cur = self._db.execute(
            "SELECT body, h, prev FROM records WHERE kind=? ORDER BY id", (kind,)
        )
        for body, h, prev in cur:
            yield json.loads(to_text(body, h, prev))
