"""Gauge reports and wet-stock findings → the platform's record bodies (T1, T2, A3–A8).

Pure functions, no I/O and no clock reads: the caller passes the station's
offset and, for ATG_OFFLINE, the time. Each returns ``(rid, body)``; the rid
rules (docs/uplink-protocol.md) make a record read twice the same record:

- tank      ``"{tank}:{at YYYYMMDDHHmm}"`` — one snapshot per console minute
- delivery  ``"{tank}:g:{start}"`` from the gauge, ``"{tank}:e:{start}"`` from the edge
- leak      ``"{tank}:{started}"``
- alarm     ``"{source}:{code}:{raised|cleared}:{at ms}"``
- detected  ``"{tank}:e:{start}"`` — a local record (never published): an edge
  delivery waiting for the gauge's i202, forgotten in the commit that decides it

Console times are naive wall-clock times at the station's offset (the
console's own clock, minute resolution), like a dispenser's.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from datetime import datetime, timezone
from decimal import Decimal

from buffer.commits import Forget, Item, NewRecord
from collector.station.records import Record, alarm_record, stamp
from collector.station.wetstock import (
    UNREPORTED_DELIVERY,
    AlarmChange,
    Detected,
    EdgeDelivery,
    Finding,
    Reconciled,
    Sample,
    Unreported,
    Wetstock,
    delivery_fields,
)
from protocols.tls import (
    Deliveries,
    Delivery,
    Inventory,
    LeakTestResult,
    LeakTestResults,
    SystemStatus,
    TankAlarms,
    TankInventory,
    decimal_string,
)
from protocols.tls.reports import (
    LEAK_TEST_RESULTS,
    LEAK_TEST_TYPES,
    STATUS_DELIVERY_IN_PROGRESS,
    STATUS_INVALID_HEIGHT,
    STATUS_LEAK_TEST_IN_PROGRESS,
    TankAlarmCode,
)

#: i201 status bits → the names a tank record's ``status`` lists.
STATUS_NAMES = (
    (STATUS_DELIVERY_IN_PROGRESS, "DELIVERY_IN_PROGRESS"),
    (STATUS_LEAK_TEST_IN_PROGRESS, "LEAK_TEST_IN_PROGRESS"),
    (STATUS_INVALID_HEIGHT, "INVALID_HEIGHT"),
)

ATG_OFFLINE = "ATG_OFFLINE"
GAUGE_SOURCE = "gauge"


def minute(at: datetime) -> str:
    return at.strftime("%Y%m%d%H%M")


def tank_source(tank: int) -> str:
    return f"tank:{tank}"


def tank_record(t: TankInventory, at: datetime, grade: str, tz: timezone) -> Record:
    """One i201 tank as an ``up/tank`` body; ``status`` lists the set status bits
    (empty: normal; ``["INACTIVE"]`` when the console answered ``?``)."""
    status = [name for bit, name in STATUS_NAMES if (t.status or 0) & bit]
    if t.inactive:
        status = ["INACTIVE"]
    body = {
        "tank": t.tank,
        "grade": grade,
        "at": stamp(at, tz),
        "height_mm": decimal_string(t.height, "height"),
        "water_mm": decimal_string(t.water, "height"),
        "volume_l": decimal_string(t.volume, "volume"),
        "tc_volume_l": decimal_string(t.tc_volume, "volume"),
        "ullage_l": decimal_string(t.ullage, "volume"),
        "water_volume_l": decimal_string(t.water_volume, "volume"),
        "temp_c": decimal_string(t.temperature, "temperature"),
        "status": status,
    }
    return f"{t.tank}:{minute(at)}", body


def gauge_delivery_record(tank: int, d: Delivery, grade: str, tz: timezone) -> Record:
    body = _delivery_body(tank, d, grade, tz, source="gauge", flags=[])
    return f"{tank}:g:{minute(d.start)}", body


def edge_delivery_record(d: EdgeDelivery, grade: str, tz: timezone, flags: list[str]) -> Record:
    sold = decimal_string(d.sold_during, "volume")
    body = _delivery_body(d.tank, d, grade, tz, sold_during_l=sold, source="edge", flags=flags)
    return f"{d.tank}:e:{minute(d.start)}", body


def _delivery_body(
    tank: int, d: Delivery | EdgeDelivery, grade: str, tz: timezone, **more: object
) -> dict[str, object]:
    """A ``delivery`` body, the gauge's or the edge's: what both measure, then ``more``."""
    return {
        "tank": tank,
        "grade": grade,
        "started_at": stamp(d.start, tz),
        "ended_at": stamp(d.end, tz),
        "start_volume_l": decimal_string(d.start_volume, "volume"),
        "end_volume_l": decimal_string(d.end_volume, "volume"),
        "volume_l": decimal_string(d.volume, "volume"),
        "tc_volume_l": decimal_string(d.tc_volume, "volume"),
        **more,
    }


def leak_record(tank: int, r: LeakTestResult, tz: timezone) -> Record:
    hours = r.hours
    body = {
        "tank": tank,
        "started_at": stamp(r.start, tz),
        "duration_s": None if hours is None else int(hours * 3600),
        "result": LEAK_TEST_RESULTS.get(r.result, f"RESULT_{r.result:02d}"),
        "rate_lph": decimal_string(r.rate, "rate"),
        "test_type": LEAK_TEST_TYPES.get(r.test_type, f"TYPE_{r.test_type:02d}"),
    }
    return f"{tank}:{minute(r.start)}", body


def tank_alarm_name(code: TankAlarmCode | int) -> str:
    """i205 code → alarm ``code``: the manual's name, or ``TANK_ALARM_NN``."""
    return code.name if isinstance(code, TankAlarmCode) else f"TANK_ALARM_{code:02d}"


def finding_record(f: AlarmChange, tz: timezone) -> Record:
    return alarm_record(tank_source(f.tank), f.code, f.raised, f.at, tz, dict(f.detail))


#: The local kind of a detected delivery waiting for its i202 (buffer/commits.py).
DETECTED = "detected"


def detected_rid(d: EdgeDelivery) -> str:
    return f"{d.tank}:e:{minute(d.start)}"


def record(kind: str, made: Record) -> NewRecord:
    return NewRecord(kind, *made)


class GaugeState:
    """What the gauge task remembers between reports, and the records each one
    yields. Pure: the task does the reading, the store and the clock.

    Alarm sets are diffed per tank (i205) and for the console (i101 groups
    other than tank alarms): a code that appears is ``raised``, one that
    disappears ``cleared``. After a restart the first read raises whatever
    is active again (with that read's time, so a new rid): the platform
    learns the current state rather than missing it.

    Each method advances the state and returns the records of the change;
    the task hands them to the store's writer as one commit. When the
    writer cannot take them, :meth:`restore` puts back a :meth:`snapshot`
    taken before, so the report read again later yields them again.
    """

    def __init__(self, wetstock: Wetstock, grades: Mapping[int, str], tz: timezone) -> None:
        self.wetstock = wetstock
        self.grades = dict(grades)
        self.tz = tz
        self.products: dict[int, str] = {}
        self.tank_alarms: dict[int, set[str]] = {}
        self.system_alarms: set[str] | None = None
        self.offline = False

    def snapshot(self) -> object:
        """Everything the methods below advance (the wet-stock tanks included)."""
        return copy.deepcopy(
            (self.products, self.tank_alarms, self.system_alarms, self.offline, self.wetstock.tanks)
        )

    def restore(self, snapshot: object) -> None:
        (self.products, self.tank_alarms, self.system_alarms, self.offline,
         self.wetstock.tanks) = copy.deepcopy(snapshot)  # type: ignore[misc]  # fmt: skip

    def grade(self, tank: int) -> str:
        """The configured grade, else the console's one-character product code."""
        return self.grades.get(tank) or self.products.get(tank, "?")

    def inventory(self, report: Inventory, now_s: float, sold: Mapping[int, Decimal]) -> list[Item]:
        out: list[Item] = []
        for t in report.tanks:
            self.products.setdefault(t.tank, t.product)
            out.append(record("tank", tank_record(t, report.at, self.grade(t.tank), self.tz)))
            if t.inactive or t.volume is None or t.invalid_height:
                continue  # no level to follow: nothing for the wet-stock checks
            sample = Sample(
                at=report.at,
                now_s=now_s,
                volume=t.volume,
                sold=sold.get(t.tank, Decimal(0)),
                tc_volume=t.tc_volume,
                ullage=t.ullage,
                water_volume=t.water_volume,
            )
            out += self._findings(self.wetstock.inventory(t.tank, sample))
        return out

    def deliveries(self, report: Deliveries) -> list[Item]:
        out: list[Item] = []
        for td in report.tanks:
            for d in td.deliveries:
                made = gauge_delivery_record(td.tank, d, self.grade(td.tank), self.tz)
                out.append(record("delivery", made))
            intervals = [(d.start, d.end) for d in td.deliveries]
            out += self._findings(self.wetstock.gauge_deliveries(td.tank, report.at, intervals))
        return out

    def leak_results(self, report: LeakTestResults) -> list[Item]:
        return [
            record("leak", leak_record(tank, r, self.tz))
            for tank, results in report.tanks.items()
            for r in results
        ]

    def alarms(self, report: TankAlarms) -> list[Item]:
        out: list[Item] = []
        for tank, codes in report.tanks.items():
            now = {tank_alarm_name(c) for c in codes}
            before = self.tank_alarms.get(tank, set())
            self.tank_alarms[tank] = now
            out += self._diff(tank_source(tank), before, now, report.at)
        return out

    def system(self, report: SystemStatus) -> list[Item]:
        # Tank alarms (AA = 02) come per tank from i205; the rest is the console's.
        now = {a.name for a in report.alarms if a.category not in (0, 2)}
        before, self.system_alarms = self.system_alarms or set(), now
        return self._diff(GAUGE_SOURCE, before, now, report.at)

    def answered(self, at: datetime) -> list[Item]:
        """The console answered: clear ATG_OFFLINE if it was raised."""
        if not self.offline:
            return []
        self.offline = False
        return [record("alarm", alarm_record(GAUGE_SOURCE, ATG_OFFLINE, False, at, self.tz, {}))]

    def missed(self, at: datetime, misses: int, offline_after: int) -> list[Item]:
        """``misses`` requests in a row went unanswered (or the link is down)."""
        if self.offline or misses < offline_after:
            return []
        self.offline = True
        detail = {"missed": misses}
        made = alarm_record(GAUGE_SOURCE, ATG_OFFLINE, True, at, self.tz, detail)
        return [record("alarm", made)]

    def _diff(self, source: str, before: set[str], now: set[str], at: datetime) -> list[Item]:
        changes = [(code, True) for code in sorted(now - before)]
        changes += [(code, False) for code in sorted(before - now)]
        return [
            record("alarm", alarm_record(source, code, raised, at, self.tz, {}))
            for code, raised in changes
        ]

    def _findings(self, findings: list[Finding]) -> list[Item]:
        out: list[Item] = []
        for f in findings:
            if isinstance(f, Detected):
                body = delivery_fields(f.delivery)
                out.append(NewRecord(DETECTED, detected_rid(f.delivery), body, local=True))
            elif isinstance(f, Reconciled):
                out.append(Forget(DETECTED, detected_rid(f.delivery)))
            elif isinstance(f, Unreported):
                flags = [UNREPORTED_DELIVERY]
                grade = self.grade(f.delivery.tank)
                out.append(
                    record("delivery", edge_delivery_record(f.delivery, grade, self.tz, flags))
                )
                out.append(Forget(DETECTED, detected_rid(f.delivery)))
            else:
                out.append(record("alarm", finding_record(f, self.tz)))
        return out
