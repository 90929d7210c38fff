"""A port's alarms raised and cleared once per episode (SPEC D14, D1):
NOZZLE_OFFLINE per nozzle (or pump) whose pump stopped answering,
PORT_OFFLINE for the line itself, NOZZLE_UNKNOWN once per number a pump
does not have, and the dispenser's own alarms as it reports them.

The state kept here advances only when the port's writer
(collector/station/port_writer.py) took the alarm: it commits what it took
in order, so a raise is always stored before its clear; an alarm not taken
leaves the state as the store knows it, and the next report asks again.
"""

from __future__ import annotations

from typing import Any

import structlog

from collector.station.nozzles import NozzleTable
from collector.station.port_stats import PortStats
from collector.station.port_writer import PortWriter
from collector.station.records import alarm_record, source_key
from protocols.events import DeviceAlarm, PumpLink

log = structlog.get_logger("collector.station.port")


class PortAlarms:
    """One port's alarm episodes: what is raised now, raised or cleared once."""

    def __init__(
        self,
        number: int,
        nozzles: NozzleTable,
        writer: PortWriter,
        stats: PortStats,
        nozzles_per_pump: int | None,
    ) -> None:
        self.number = number
        self.nozzles = nozzles
        self.writer = writer
        self.stats = stats
        self.nozzles_per_pump = nozzles_per_pump
        self._unknown_seen: set[tuple[int, int]] = set()  # NOZZLE_UNKNOWN alarmed
        #: Pumps (prefix) and nozzles with NOZZLE_OFFLINE raised (D14).
        self._offline: set[str] = set()
        self._port_offline = False

    def unknown_nozzle(self, address: int, nozzle: int, what: str) -> None:
        """A report naming a nozzle the pump does not have (a misread, a wrong
        ``nozzles``): it creates no nozzle — no live state, no chain, no
        NOZZLE_OFFLINE of its own. NOZZLE_UNKNOWN on the pump, once per number
        per run (bounded: 256 numbers per pump); counted every time."""
        self.stats.error("nozzle_unknown")
        if (address, nozzle) in self._unknown_seen:
            return
        detail = {"nozzle": nozzle, "nozzles": self.nozzles_per_pump, "report": what}
        if self.writer.alarm("NOZZLE_UNKNOWN", f"p{self.number:02d}.a{address}", True, detail):
            self._unknown_seen.add((address, nozzle))

    def pump_link(self, prefix: str, link: PumpLink) -> None:
        """NOZZLE_OFFLINE raised or cleared for the pump's nozzles (``prefix``),
        once per episode (D14)."""
        # Per nozzle where the nozzles are known, else for the pump itself.
        sources = self.nozzles.keys_under(prefix) or [prefix[:-1]]
        for source in sources:
            if link.online == (source not in self._offline):
                continue
            if not self.writer.alarm(
                "NOZZLE_OFFLINE", source, not link.online, {"address": link.address}
            ):
                continue  # not taken (counted): the state stays as the store knows it
            if link.online:
                self._offline.discard(source)
            else:
                self._offline.add(source)
        if link.online:  # a pump-level alarm raised before its nozzles were known
            pump = prefix[:-1]
            if pump in self._offline and self.writer.alarm(
                "NOZZLE_OFFLINE", pump, False, {"address": link.address}
            ):
                self._offline.discard(pump)

    def port_link(self, online: bool, reason: str = "") -> None:
        """The serial line itself failed or is back (PORT_OFFLINE, raised and
        cleared once per episode). Distinct from a silent pump (NOZZLE_OFFLINE)."""
        if online != self._port_offline:
            return
        detail: dict[str, Any] = {"reason": reason} if reason else {}
        # Not taken: the state stays, and the supervisor's next open or failure asks again.
        if self.writer.alarm("PORT_OFFLINE", f"p{self.number:02d}", not online, detail):
            self._port_offline = not online

    def device_alarm(self, alarm: DeviceAlarm, known: bool) -> None:
        """A dispenser's own alarm (SPEC D14: metering, security), raised or
        cleared as it reports it; on the pump when its nozzle is not ``known``."""
        detail: dict[str, Any] = {"raw_code": alarm.raw_code, "text": alarm.detail}
        if known:
            source = source_key(self.number, alarm.address, alarm.nozzle)
        else:  # kept, on the pump: a number it lacks makes no nozzle
            source, detail["nozzle"] = source_key(self.number, alarm.address, None), alarm.nozzle
        now = self.writer.stamp(f"{source}:{alarm.code}").replace(tzinfo=None)
        rid, body = alarm_record(source, alarm.code, alarm.active, now, self.writer.tz, detail)
        self.writer.store_record("alarm", rid, body)
        log.warning("dispenser_alarm", source=source, code=alarm.code, active=alarm.active)
