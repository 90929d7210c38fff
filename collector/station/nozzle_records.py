"""A port's ``nozzle`` records (SPEC D2, D13): state changes and totalizer
snapshots from the live :class:`~collector.station.nozzles.NozzleTable`,
rate-bounded per nozzle, and the GB/T 9081 identities with their
NOZZLE_UID_CHANGED / COMPONENT_CHANGED alarms (SPEC A6).

Records go to the port's writer (collector/station/port_writer.py); an
identity becomes the one later orders carry only once the writer took it.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable
from datetime import datetime
from typing import Any

import structlog

from buffer.commits import Item, NewRecord
from buffer.store import OrderStore
from collector.station.identities import NOZZLE_UID, Identities, changes
from collector.station.nozzles import NozzleTable
from collector.station.port_stats import PortStats
from collector.station.port_writer import PortWriter
from collector.station.records import alarm_record, decimal_str, iso, nozzle_key, source_key
from protocols.events import Identity, Totals

log = structlog.get_logger("collector.station.port")

#: State-change ``nozzle`` records per nozzle: a burst of this many, then
#: one per :data:`STATE_RECORD_EVERY_S`. A sale is three changes (lifted,
#: fuelling, idle) and takes a minute or more, so honest traffic never
#: reaches the bound; a nozzle flapping on a bad contact (or a driver bug)
#: cannot fill the store. Suppressed changes are counted (stats.errors).
STATE_RECORD_BURST = 30
STATE_RECORD_EVERY_S = 1.0


class NozzleRecords:
    """One port's ``nozzle`` records and the identities they carry."""

    def __init__(
        self,
        number: int,
        store: OrderStore,
        nozzles: NozzleTable,
        writer: PortWriter,
        stats: PortStats,
        changed: Callable[[], None],
    ) -> None:
        self.number = number
        self.nozzles = nozzles
        self.writer = writer
        self.stats = stats
        self._changed = changed  # a change seen (collector/station/port_stats.py)
        self._tokens: dict[str, tuple[float, float]] = {}  # key → (tokens, at)
        #: Last identity stored per pump / nozzle (read from the store on first
        #: use): orders carry the nozzle's uid from it; reports compare with it.
        self._identities = Identities(store)

    def _allow(self, key: str) -> bool:
        """Token bucket per nozzle for state records (STATE_RECORD_BURST)."""
        now = time.monotonic()
        tokens, at = self._tokens.get(key, (float(STATE_RECORD_BURST), now))
        tokens = min(float(STATE_RECORD_BURST), tokens + (now - at) / STATE_RECORD_EVERY_S)
        if tokens < 1:
            self._tokens[key] = (tokens, now)
            self.stats.error("state_suppressed")
            return False
        self._tokens[key] = (tokens - 1, now)
        return True

    def state(self, key: str, *, force: bool = False) -> None:
        """A ``nozzle`` record: the nozzle's state and totalizers now."""
        if not force and not self._allow(key):
            return
        nozzle = self.nozzles.get(key)
        rid, now = self.writer.rid(key, "state")
        body = {
            "nozzle": key,
            "at": iso(now),
            "state": str(nozzle.state),
            "totalizer_volume": decimal_str(nozzle.totalizer_volume),
            "totalizer_amount": decimal_str(nozzle.totalizer_amount),
            "components": None,
        }
        self.writer.store_record("nozzle", rid, body)

    def totals(self, totals: Totals) -> None:
        """Totalizers read on their own: a snapshot record when they moved."""
        key = nozzle_key(self.number, totals.address, totals.nozzle)
        nozzle = self.nozzles.get(key)
        if (nozzle.totalizer_volume, nozzle.totalizer_amount) == (totals.volume, totals.amount):
            return
        self._changed()
        nozzle.totalizer_volume, nozzle.totalizer_amount = totals.volume, totals.amount
        self.state(key, force=True)

    def identity(self, identity: Identity) -> None:
        """GB/T 9081 identities (SPEC D13): a ``nozzle`` record when first seen or
        changed, and NOZZLE_UID_CHANGED / COMPONENT_CHANGED when one differs
        from the identity last stored (SPEC A6; collector/station/identities.py).

        Store first: the alarms and the record go to the writer together, and
        only once it has taken them is the new identity the one later orders
        carry (the writer commits in order: those orders after it) and later
        reads compare with. Not taken: the old one stays, and the next read
        finds the same change again."""
        where = (identity.address, identity.nozzle)
        source = source_key(self.number, identity.address, identity.nozzle)
        before, after = self._identities.known(where, source), dict(identity.components)
        if before == after:
            return
        self._changed()
        tz = self.writer.tz
        now = datetime.now(tz)
        items: list[Item] = []
        for code, detail in [] if before is None else changes(before, after):
            naive = now.replace(tzinfo=None)
            rid, alarm = alarm_record(source, code, True, naive, tz, detail)
            items.append(NewRecord("alarm", rid, alarm))
            log.warning("identity_changed", source=source, code=code)
        body: dict[str, Any] = {
            "nozzle": source,
            "at": iso(now),
            "state": None,
            "totalizer_volume": None,
            "totalizer_amount": None,
            "components": dict(sorted(after.items())),
        }
        # Two reads within a millisecond (one batch of events) differ by what
        # they say: the id names both, so the second is not taken for a repeat.
        stamp_ms = int(now.timestamp() * 1000)
        said = zlib.crc32(repr(body["components"]).encode())
        items.append(NewRecord("nozzle", f"{source}:components:{stamp_ms}:{said:08x}", body))
        if self.writer.submit(items):
            self._identities.stored(where, after)

    def nozzle_uid(self, address: int, nozzle: int) -> str | None:
        """The nozzle's unique ID as last stored; None before its first identity
        read (or on a protocol that carries none)."""
        source = source_key(self.number, address, nozzle)
        known = self._identities.known((address, nozzle), source)
        return None if known is None else known.get(NOZZLE_UID)
