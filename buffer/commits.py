"""What one commit takes, and what came of each part of it.

:meth:`buffer.store.OrderStore.commit` takes a sequence of items — a new
order, a new record of another kind, a local record forgotten — and commits
them in one transaction. Each item gets an :class:`Outcome`; a transaction
that fails as a whole (disk full, I/O error, lock) raises
:class:`~buffer.schema.StoreError` instead and nothing of it is stored.

The outcomes, and what a caller's state may do on each:

- ``STORED``: committed now. The state that depends on the record advances.
- ``DUPLICATE``: the same record was already stored (the dispenser offered a
  sale again because our confirmation did not reach it; a gauge report read
  twice). Advance as for ``STORED``: the store holds it.
- ``CONFLICT``: a *different* record holds the same key (a dispenser's
  transaction number used twice, a snapshot rid reused with other content).
  The new record is not stored under that key; it is kept whole in a
  ``RECORD_REFUSED`` alarm committed in the same transaction (logged,
  counted), so nothing the dispenser said is lost and a pump is not asked
  forever for a sale it can never get past. The store holds it: advance.
- ``ERROR``: refused for good, nothing stored but the ``RECORD_REFUSED``
  alarm saying why — a body that is not canonical JSON (a float), or a
  unique index other than the record's key (an order's ``nseq`` already
  taken: the store's chain head was stale). Do not advance: a poll port does
  not confirm the sale, the pump offers it again.
- ``REFUSED``: not committed *now* (the store failed; buffer/writer.py only,
  for records whose source keeps them: a poll port's sale stays in the pump).
  Do not advance.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from buffer.outbox import StoredRecord


@dataclass(frozen=True, slots=True)
class NewOrder:
    """An order; the store assigns ``rid``, ``nseq``, ``prev`` and ``h`` in the commit.

    ``source_key`` is the dispenser's own identity of the sale (unique per nozzle).
    ``alarms``: ``(code, alarm body without rid)`` of the order's edge findings,
    committed in the order's own transaction once it is stored (never for a
    duplicate or a refused order), each under ``"{order rid}:{code}"`` with
    the order's rid as ``detail.order``: an order and its alarms are never
    one without the other.
    """

    nozzle: str
    fields: Mapping[str, Any]
    source_key: str
    alarms: tuple[tuple[str, Mapping[str, Any]], ...] = ()
    kind: ClassVar[str] = "order"

    @property
    def key(self) -> str:
        return f"{self.nozzle}/{self.source_key}"


@dataclass(frozen=True, slots=True)
class NewRecord:
    """A record of ``kind`` under ``rid`` (stable for one fact: docs/uplink-protocol.md).

    ``local``: kept on the box and never published (a delivery the edge
    detected, waiting for the gauge's report): stored as already sent and
    never evicted; removed by a :class:`Forget` committed with its decision.
    """

    kind: str
    rid: str
    body: Mapping[str, Any]
    local: bool = False

    @property
    def key(self) -> str:
        return self.rid


@dataclass(frozen=True, slots=True)
class Forget:
    """Delete a ``local`` record, in the transaction that commits what replaced it."""

    kind: str
    rid: str

    @property
    def key(self) -> str:
        return self.rid


Item = NewOrder | NewRecord | Forget


class Result(enum.StrEnum):
    STORED = "stored"
    DUPLICATE = "duplicate"
    CONFLICT = "conflict"
    ERROR = "error"
    REFUSED = "refused"


@dataclass(frozen=True, slots=True)
class Outcome:
    result: Result
    #: The record as committed (``STORED``; for a ``Forget``: None).
    record: StoredRecord | None = None
    #: Why, for ``CONFLICT``, ``ERROR`` and ``REFUSED``.
    detail: str = ""

    @property
    def kept(self) -> bool:
        """True when the store holds the record (or, for a conflict, its
        ``RECORD_REFUSED`` alarm holds it): the state that waits on it advances."""
        return self.result in (Result.STORED, Result.DUPLICATE, Result.CONFLICT)


STORED = Outcome(Result.STORED)
DUPLICATE = Outcome(Result.DUPLICATE)
