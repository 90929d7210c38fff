"""How the simulated POS books the sales it reads: the faults that the
collector's reconciliation (collector/station/reconcile.py) must find.

- ``skip_every`` N: every Nth sale the POS reads (in order of first read) is
  not confirmed for ``skip_for_s``; the pump offers it again meanwhile (its
  record stays pending until confirmed) and the POS ignores it, then
  confirms it late. Beyond the collector's ``books.confirm_within_s`` that is
  a ``SALE_UNCONFIRMED``.
- ``amount_off_every`` N: every Nth sale is confirmed with ``amount_off_fen``
  more than the pump reported (a ``CONFIRM_MISMATCH``).
- ``values``: every Sinopec 3C carries the booked amount and volume (the
  long form, protocols/sinopec/messages.py); implied by ``amount_off_every``.

Sinopec only: the POS's own driver builds the short 3C, which
:meth:`Booking.rewrite` replaces on its way out with the long one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from protocols.events import Sale
from protocols.sinopec.framer import Frame, FrameDecoder, encode_frame
from protocols.sinopec.messages import CMD_CONFIRM, build_confirm_values, parse_confirm


@dataclass
class Booking:
    skip_every: int = 0
    skip_for_s: float = 3.0
    amount_off_every: int = 0
    amount_off_fen: int = 100
    values: bool = False
    #: Sale key → (its number in order of first read, first read at).
    seen: dict[str, tuple[int, float]] = field(default_factory=dict)
    #: (address, POS_TTC) → the sale, for the values of its confirmation.
    sales: dict[tuple[int, int], Sale] = field(default_factory=dict)

    @property
    def active(self) -> bool:
        return bool(self.skip_every or self.amount_off_every or self.values)

    def read(self, sale: Sale, now: float) -> tuple[bool, str | None]:
        """The POS read ``sale``: (confirm it now?, what is done to it, first read only)."""
        first = sale.key not in self.seen
        if first:
            self.seen[sale.key] = (len(self.seen) + 1, now)
        number, at = self.seen[sale.key]
        if sale.counter is not None:
            self.sales[(sale.address, sale.counter)] = sale
        if self.skip_every and number % self.skip_every == 0:
            if now - at < self.skip_for_s:
                return False, "skipped" if first else None
            return True, None
        if self.amount_off_every and number % self.amount_off_every == 0:
            return True, "amount_off" if first else None
        return True, None

    def rewrite(self, request: bytes) -> bytes:
        """A Sinopec 3C on its way out, with the booked values."""
        if not (self.values or self.amount_off_every):
            return request
        items = FrameDecoder().receive_data(request)
        if len(items) != 1 or not isinstance(items[0], Frame):
            return request
        frame = items[0]
        if frame.command != CMD_CONFIRM:
            return request
        pos_ttc = parse_confirm(frame.data)
        if not isinstance(pos_ttc, int):
            return request
        sale = self.sales.get((frame.dst, pos_ttc))
        if sale is None:
            return request
        amn = int(sale.amount * 100)
        number, _ = self.seen[sale.key]
        if self.amount_off_every and number % self.amount_off_every == 0:
            amn += self.amount_off_fen
        data = build_confirm_values(pos_ttc, amn, int(sale.volume * 100))
        return encode_frame(Frame(frame.dst, frame.src, frame.ctrl, data))
