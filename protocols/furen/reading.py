"""What a Furen master knows about its fuelling point, and how the pump's replies read.

The poll driver (:class:`~protocols.furen.driver.FurenPoller`) and the
passive monitor (:class:`~protocols.furen.monitor.FurenMonitor`) keep one
:class:`PumpReader` each and read every reply with it, so both turn the
same bytes into the same events; they differ only in *when* a sale record
counts (docs/protocols/furen.md, "Sales").

Nozzle states, from a status reply (layouts in :mod:`protocols.furen.messages`):
5B → ``FUELLING`` with the fill's volume and amount so far; 5A with a nozzle
out → ``LIFTED`` (00 lifted, or a fill ended with the nozzle still out; FF
stopped); 5A with none out → every nozzle ``IDLE``. A fuelling point uses
one nozzle at a time: when the pump names another nozzle, the one it named
before is back in its holster (``IDLE``). Only changes are reported, and
after :meth:`PumpReader.forget` (the link went down) every nozzle once.

The nozzle a reply is about: the request's (``ctrl`` ``F0 | n``) when the
reader was told it; else ``[3]`` when it is ``F0 | n`` on a pump
configured with several nozzles; else nozzle 1 — a single-nozzle pump puts
an undefined byte in ``[3]`` (``fangym0335/first src/lischn009.c:1575-1586``,
``src/changelog_tcc.txt:37-38``).

A sale (the answer to 56): the nozzle's last record. It carries no sequence
number and no time; what identifies it is the nozzle's totals after it, so
``key = "<nozzle>:<volume total>"`` and ``order_no`` is the volume total as
a raw integer: the same record read again has the same key, and two equal
fills never do — the totals only grow. A record with volume 0 is no sale (a
nozzle never used, or a lift without fuel: the FCC's zero transaction,
``:1026``, ``:1077-1082``). ``ended_at`` is the station's clock when the
reader first saw the record (the wire has no time), the same on every
later reading of it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime

from protocols.bcd import scaled
from protocols.events import Event, NozzleState, NozzleStatus, ProtocolError, Sale, Totals
from protocols.furen.framer import MAX_NOZZLE, Frame
from protocols.furen.messages import SaleRecord, parse_record, parse_status, parse_totals

# nozzle_grades: the drivers and monitors of this family import it from here.
from protocols.saleline import SaleMaker, Scale
from protocols.saleline import nozzle_grades as nozzle_grades

#: The one address a Furen line has: the protocol carries none (the
#: driver's module doc).
ADDRESS = 1

#: Sale keys whose first-seen time is remembered: a pump holds one record
#: per nozzle (at most 8), so a few per nozzle is plenty; bounded all the same.
MAX_REMEMBERED = 64


def one_point(addresses: Sequence[int]) -> None:
    """A Furen line has one fuelling point: ``addresses`` must be [:data:`ADDRESS`]."""
    if list(addresses) != [ADDRESS]:
        raise ValueError(f"a Furen line has one fuelling point: addresses must be [{ADDRESS}]")


class PumpReader:
    """One fuelling point's replies, read into events (module doc)."""

    def __init__(
        self,
        address: int,
        nozzles: int,
        *,
        scale: Scale,
        grades: Mapping[int, str],
        clock: Callable[[], datetime],
    ) -> None:
        if not 1 <= nozzles <= MAX_NOZZLE:
            raise ValueError(f"nozzles must be 1..{MAX_NOZZLE}")
        self.address = address
        self.nozzles = nozzles
        self._scale = scale
        self._grades = dict(grades)
        #: Nozzle → the state last reported (absent: not reported since forget()).
        self._shown: dict[int, tuple[NozzleState, int | None, int | None]] = {}
        #: (nozzle, raw volume) of the fill the last status showed going on.
        self._live: tuple[int, int] | None = None
        self._sales = SaleMaker(
            address, scale=scale, grades=self._grades, clock=clock, remembered=MAX_REMEMBERED
        )
        self.transients = 0

    # ------------------------------------------------------------ nozzles

    def nozzle_of(self, frame: Frame, asked: int | None = None) -> int | ProtocolError:
        """The nozzle ``frame`` is about (module doc); ``asked``: the request's."""
        if asked is None and self.nozzles == 1:
            return 1
        named = frame.nozzle_byte if asked is None else asked
        if named is None:
            return ProtocolError("bad_message", f"[3] {frame.ctrl:02X} names no nozzle")
        if named > self.nozzles:
            detail = f"nozzle {named} beyond the {self.nozzles} configured"
            return ProtocolError("bad_message", detail, self.address)
        return named

    def live_volume(self, nozzle: int) -> int | None:
        """The raw volume of the fill the last status showed going on at
        ``nozzle`` (5B ``[7..9]``), else None."""
        return self._live[1] if self._live is not None and self._live[0] == nozzle else None

    def forget(self) -> None:
        """The link went down: states are unknown until the next status."""
        self._shown.clear()
        self._live = None

    def status(self, frame: Frame) -> list[Event]:
        """A status reply → the nozzle states that changed (module doc)."""
        reply = parse_status(frame)
        if isinstance(reply, ProtocolError):
            return [reply]
        if reply.transient:
            self.transients += 1
            return []
        now: dict[int, tuple[NozzleState, int | None, int | None]] = {}
        self._live = None
        if reply.out:
            nozzle = self.nozzle_of(frame)
            if isinstance(nozzle, ProtocolError):
                return [nozzle]
            state = NozzleState.FUELLING if reply.fuelling else NozzleState.LIFTED
            now[nozzle] = (state, reply.volume, reply.amount)
            if reply.fuelling and reply.volume is not None:
                self._live = (nozzle, reply.volume)
        events: list[Event] = []
        for n in range(1, self.nozzles + 1):
            shown = now.get(n, (NozzleState.IDLE, None, None))
            if self._shown.get(n) != shown:
                self._shown[n] = shown
                events.append(self._status_event(n, *shown))
        return events

    def _status_event(
        self, nozzle: int, state: NozzleState, volume: int | None, amount: int | None
    ) -> NozzleStatus:
        scale = self._scale
        return NozzleStatus(
            self.address,
            nozzle,
            state,
            volume=None if volume is None else scaled(volume, scale.volume),
            amount=None if amount is None else scaled(amount, scale.amount),
        )

    # ------------------------------------------------------------ sales and totals

    def record(self, frame: Frame) -> SaleRecord | ProtocolError:
        """The answer to 56 (its layout checked)."""
        record = parse_record(frame.data)
        if isinstance(record, ProtocolError):
            return ProtocolError(record.kind, record.detail, self.address)
        return record

    def sale(self, nozzle: int, record: SaleRecord, raw: bytes) -> Sale | None:
        """The :class:`Sale` a record is, or None (volume 0: no sale)."""
        if record.volume == 0:
            return None
        totals = (record.volume_total, record.amount_total)
        counts = (record.price, record.volume, record.amount)
        return self._sales.sale(nozzle, counts, totals, sale_key(nozzle, record), raw)

    def totals(self, frame: Frame, nozzle: int) -> Totals | ProtocolError:
        """The answer to 58."""
        reply = parse_totals(frame.data)
        if isinstance(reply, ProtocolError):
            return ProtocolError(reply.kind, reply.detail, self.address)
        scale = self._scale
        return Totals(
            self.address,
            nozzle,
            scaled(reply.volume_total, scale.volume),
            scaled(reply.amount_total, scale.amount),
        )


def sale_key(nozzle: int, record: SaleRecord) -> str:
    """What identifies a sale record (module doc)."""
    return f"{nozzle}:{record.volume_total}"
