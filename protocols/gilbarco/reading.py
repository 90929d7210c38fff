"""Reading one finished Gilbarco transaction: 4 then 5, until two readings agree.

A :class:`SaleRead` is the driver's read of one pump's end of transaction
(:mod:`protocols.gilbarco.driver`, "Reading a sale"), sans-IO. The FCC
reads each once (totals, then the transaction when a totalizer moved,
lischn001.c:1400, 1474-1477); we read each until two readings agree, because
the LRC is 4 bits:

- ``step`` is the command to send next: 4 (transaction data), then 5
  (totals).
- Each step is asked until two good readings in a row agree: the
  transaction, then the totals of the transaction's grade (another hose's
  totals may move in between and are not used). The LRC is 4 bits, so a
  reply with several corrupted bytes passes it about 1 time in 16; two equal
  wrong readings do not happen. A good reading unlike the previous one is
  reported ``bad_message`` and counts as spoilt.
- A transaction naming another pump in its pump data is not ours (the
  FCC checks the same word, lischn001.c:1742-1751).
- A spoilt reply (bad LRC, incomplete, another layout, another pump's,
  totals without the grade, a disagreeing reading) is asked again; after
  :data:`MAX_READ_ATTEMPTS` in a row the read is *parked* (the other pumps
  have their turn, then it goes on), after :data:`MAX_PARKS` parks it is
  given up.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from protocols.events import ProtocolError
from protocols.gilbarco.codes import CMD_TOTALS, CMD_TRANSACTION
from protocols.gilbarco.framer import Frame
from protocols.gilbarco.messages import (
    GradeTotals,
    TotalsData,
    TransactionData,
    parse_totals,
    parse_transaction,
)

#: Spoilt replies in a row to one step before the read is parked: the other
#: pumps get their turn, then the read goes on (no status poll between, which
#: a simulated pump would take as collection). A totals reply of 4 grades is
#: 124 words (30 a grade + 4, lischn001.c:1595), about 70 % spoilt when 1 %
#: of bytes are hit; six tries at ~0.25 s bound what one pump costs the
#: others per round (~1.5 s).
MAX_READ_ATTEMPTS = 6

#: Parks before the read is given up (48 spoilt replies: the pump does not
#: answer as we assume); its status is polled again, and the next end status
#: starts a new read.
MAX_PARKS = 8

Verdict = Literal["retry", "park", "give_up"]


@dataclass
class SaleRead:
    """The read of the finished transaction of the pump at ``address``."""

    address: int
    step: int = CMD_TRANSACTION  # the command of the next request
    attempts: int = 0  # spoilt replies in a row
    parks: int = 0
    reading: TransactionData | GradeTotals | None = None  # to be read again, equal
    transaction: TransactionData | None = None  # agreed
    raw: bytes = b""  # the agreed frames, for Sale.raw

    def on_frame(self, frame: Frame) -> ProtocolError | GradeTotals | None:
        """A good frame in reply to :attr:`step`.

        Returns None while the read goes on, the agreed totals of the
        transaction's grade when it is complete (:attr:`transaction` is set),
        or why the reply does not count (then call :meth:`spoilt`).
        """
        grade = self.transaction.grade if self.transaction is not None else -1
        data: TransactionData | TotalsData | ProtocolError
        if self.step == CMD_TRANSACTION:
            data = parse_transaction(frame.body)
        else:
            data = parse_totals(frame.body)
        if isinstance(data, ProtocolError):
            return data
        if isinstance(data, TransactionData) and data.pump != self.address:
            return ProtocolError(
                "bad_message", f"pump {data.pump}'s transaction, not {self.address}'s"
            )
        used = data.of(grade) if isinstance(data, TotalsData) else data
        if used is None:
            return ProtocolError("bad_message", f"totals lack grade {grade}")
        if used != self.reading:
            first, self.reading = self.reading is None, used
            if first:
                return None
            return ProtocolError("bad_message", "a good reading unlike the one before")
        self.reading, self.attempts, self.raw = None, 0, self.raw + frame.raw
        if isinstance(used, TransactionData):
            self.transaction, self.step = used, CMD_TOTALS
            return None
        return used

    def spoilt(self) -> Verdict:
        """A reply that did not count: ask again, park the read, or give it up."""
        self.attempts += 1
        if self.attempts < MAX_READ_ATTEMPTS:
            return "retry"
        self.attempts, self.parks = 0, self.parks + 1
        return "give_up" if self.parks >= MAX_PARKS else "park"
