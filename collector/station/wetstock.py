"""Wet-stock analytics at the edge (SPEC A3, A4, A5, A8): pure logic, no I/O.

The gauge task feeds every inventory reading in as a :class:`Sample` and
every i202 delivery list as intervals; this module answers with findings
(:class:`Unreported` deliveries, :class:`AlarmChange` raise / clear). It
keeps no clock of its own: a sample carries the console's time (``at``, the
curve's time axis) and the collector's monotonic time (``now_s``, the
reconciliation period's axis), so a console whose clock runs fast or wrong
cannot stretch or shrink a period.

Sales enter as ``Sample.sold``: litres sold by the tank's mapped nozzles
since the task started, read from the store when the sample was taken.
``level = volume + sold`` is the volume the tank would hold without sales;
every check works on it, which makes them blind to sales by construction:

* **Delivery from the curve** (A3, A5): at rest the level stays within
  ``noise_l`` of an *anchor* reading; a level above ``anchor + noise_l`` starts
  a rise; the rise ends once the level has not climbed by ``noise_l`` for
  ``settle_s`` of console time. The delivered volume is the mean level of
  the settled readings minus the mean level of the rest readings before the
  rise — means, so single noisy readings do not bias it. Rises below
  ``min_rise_l`` are noise, a sale committed late, or a top-up of foam.
  A detected delivery (:class:`Detected`: the caller stores it, so it
  survives a restart and comes back through :meth:`Wetstock.restore`) waits
  for the next i202 read after its detection; if no gauge record overlaps
  it, it is :class:`Unreported` (flag and alarm ``UNREPORTED_DELIVERY``),
  else :class:`Reconciled`. More than :data:`MAX_PENDING` waiting on one
  tank (a console that never answers i202) and the oldest is decided
  unreported at once (``detail.gauge_report: "none read"``): none is
  dropped silently.
* **Capacity** (A4): the gauge's capacity is ``volume + water + ullage`` (the
  console computes ullage against what it is programmed with); alarm
  ``CAPACITY_MISMATCH`` when it, or the fullest contents seen, differ from the
  declared capacity by more than ``capacity_tolerance_pct``.
* **Reconciliation** (A8): per period, ``deliveries − sales − Δinventory``
  where deliveries are the rises measured above (the physical receipts, so
  an unreported delivery is its own alarm, not a variance too). A period
  never closes during a rise, so one delivery never straddles two periods.
  ``WETSTOCK_VARIANCE`` is raised when a period's variance is beyond the
  threshold and cleared by the next period within it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

#: Rest readings kept to average the level before a rise: at the default 10 s
#: inventory period, 64 readings are ~10 minutes — enough to average noise,
#: bounded memory per tank.
MAX_REST_SAMPLES = 64
#: Settled readings averaged for the level after a rise (same reasoning).
MAX_TAIL_SAMPLES = 64
#: Gauge delivery intervals remembered per tank for matching: the console
#: lists at most 10 per tank (TLS-350); 64 covers weeks of i202 reads.
MAX_GAUGE_DELIVERIES = 64
#: Detected deliveries waiting for an i202 read per tank: more than this
#: means the gauge has not answered i202 for many deliveries (a console
#: without the report); the oldest is then decided unreported, said so.
MAX_PENDING = 16
#: Slack when matching an edge delivery to a gauge record: the edge start is
#: the last reading before the rise and its end the last climbing reading,
#: both up to one inventory period off; the console stamps whole minutes.
MATCH_SLACK = timedelta(minutes=5)

UNREPORTED_DELIVERY = "UNREPORTED_DELIVERY"
CAPACITY_MISMATCH = "CAPACITY_MISMATCH"
WETSTOCK_VARIANCE = "WETSTOCK_VARIANCE"

_PERCENT = Decimal(100)


@dataclass(frozen=True, slots=True)
class WetstockSettings:
    min_rise_l: Decimal
    noise_l: Decimal
    settle_s: float
    period_s: float
    variance_l: Decimal | None
    variance_pct: Decimal | None
    capacity_tolerance_pct: Decimal


@dataclass(frozen=True, slots=True)
class Sample:
    """One inventory reading of one tank."""

    at: datetime  # console time of the report (naive)
    now_s: float  # collector monotonic time when read
    volume: Decimal
    sold: Decimal  # litres sold by the mapped nozzles since the task started
    tc_volume: Decimal | None = None
    ullage: Decimal | None = None
    water_volume: Decimal | None = None

    @property
    def level(self) -> Decimal:
        return self.volume + self.sold

    @property
    def tc_level(self) -> Decimal | None:
        """TC volume plus the sales at this reading's correction factor."""
        if self.tc_volume is None or self.volume <= 0:
            return None
        return self.tc_volume + self.sold * self.tc_volume / self.volume


@dataclass(frozen=True, slots=True)
class EdgeDelivery:
    tank: int
    start: datetime
    end: datetime
    start_volume: Decimal
    end_volume: Decimal
    volume: Decimal
    tc_volume: Decimal | None
    sold_during: Decimal
    detected: datetime


@dataclass(frozen=True, slots=True)
class Detected:
    """A delivery measured in the curve, waiting for the gauge's i202 (stored
    by the caller until it is decided)."""

    delivery: EdgeDelivery


@dataclass(frozen=True, slots=True)
class Reconciled:
    """A detected delivery a gauge record covers: nothing to say, only to forget."""

    delivery: EdgeDelivery


@dataclass(frozen=True, slots=True)
class Unreported:
    """A delivery seen in the curve that no gauge record covers (A3)."""

    delivery: EdgeDelivery


@dataclass(frozen=True, slots=True)
class AlarmChange:
    tank: int
    code: str
    raised: bool
    at: datetime  # console time the finding refers to
    detail: dict[str, str | None]


Finding = Detected | Reconciled | Unreported | AlarmChange


def delivery_fields(d: EdgeDelivery) -> dict[str, str | int | None]:
    """A detected delivery as stored while it waits (strings: exact decimals,
    naive console times), read back by :func:`delivery_from`."""
    return {
        "tank": d.tank,
        "start": d.start.isoformat(),
        "end": d.end.isoformat(),
        "start_volume": str(d.start_volume),
        "end_volume": str(d.end_volume),
        "volume": str(d.volume),
        "tc_volume": None if d.tc_volume is None else str(d.tc_volume),
        "sold_during": str(d.sold_during),
        "detected": d.detected.isoformat(),
    }


def delivery_from(fields: Mapping[str, object]) -> EdgeDelivery:
    def dec(name: str) -> Decimal:
        return Decimal(str(fields[name]))

    tc = fields.get("tc_volume")
    return EdgeDelivery(
        tank=int(str(fields["tank"])),
        start=datetime.fromisoformat(str(fields["start"])),
        end=datetime.fromisoformat(str(fields["end"])),
        start_volume=dec("start_volume"),
        end_volume=dec("end_volume"),
        volume=dec("volume"),
        tc_volume=None if tc is None else Decimal(str(tc)),
        sold_during=dec("sold_during"),
        detected=datetime.fromisoformat(str(fields["detected"])),
    )


def _mean(values: Iterable[Decimal]) -> Decimal:
    items = list(values)
    return sum(items, Decimal(0)) / len(items)


def _text(value: Decimal | None) -> str | None:
    return None if value is None else format(value.quantize(Decimal("0.01")), "f")


@dataclass(frozen=True, slots=True)
class _Rise:
    before: list[Sample]  # rest readings before it (never empty)
    settled: list[Sample]  # readings after the last climb (never empty)
    top: Sample  # the last reading that climbed


@dataclass
class _Curve:
    """Rest / rising state of one tank's level (module doc)."""

    anchor: Sample | None = None
    rest: deque[Sample] = field(default_factory=lambda: deque(maxlen=MAX_REST_SAMPLES))
    rising: bool = False
    before: list[Sample] = field(default_factory=list)  # the rest readings before the rise
    top: Sample | None = None
    tail: deque[Sample] = field(default_factory=lambda: deque(maxlen=MAX_TAIL_SAMPLES))

    def rest_at(self, s: Sample) -> None:
        self.anchor, self.rising, self.top = s, False, None
        self.rest.clear()
        self.rest.append(s)
        self.tail.clear()

    def feed(self, s: Sample, cfg: WetstockSettings) -> _Rise | None:
        """Advance by one reading; the rise when it has just settled."""
        if self.anchor is None:
            self.rest_at(s)
            return None
        if not self.rising:
            if s.level > self.anchor.level + cfg.noise_l:
                self.rising, self.before, self.top = True, list(self.rest), s
                self.tail.clear()
            elif s.level < self.anchor.level - cfg.noise_l:
                self.rest_at(s)  # a slow loss (leak, a sale not yet committed): follow it
            else:
                self.rest.append(s)
            return None
        assert self.top is not None
        if s.level > self.top.level + cfg.noise_l:
            self.top = s
            self.tail.clear()
            return None
        self.tail.append(s)
        if (s.at - self.top.at).total_seconds() < cfg.settle_s:
            return None
        rise = _Rise(self.before, list(self.tail), self.top)
        # The settled readings are the new rest: the next rise is measured from them.
        self.rest_at(rise.settled[0])
        self.rest.extend(rise.settled[1:])
        self.anchor = s
        return rise


@dataclass
class _Tank:
    number: int
    declared_l: Decimal | None
    curve: _Curve = field(default_factory=_Curve)
    pending: list[EdgeDelivery] = field(default_factory=list)
    gauge: deque[tuple[datetime, datetime]] = field(
        default_factory=lambda: deque(maxlen=MAX_GAUGE_DELIVERIES)
    )
    capacity_raised: bool = False
    period_first: Sample | None = None
    period_deliveries: Decimal = Decimal(0)
    variance_raised: bool = False


class Wetstock:
    """Per-tank analytics; ``declared`` maps each configured tank to its declared
    capacity (None: unknown, no A4 check). Unconfigured tanks get delivery
    detection only: without a nozzle mapping their sales are unknown."""

    def __init__(self, settings: WetstockSettings, declared: Mapping[int, Decimal | None]) -> None:
        self.settings = settings
        self.configured = set(declared)
        self.tanks = {n: _Tank(n, cap) for n, cap in declared.items()}

    def _tank(self, number: int) -> _Tank:
        if number not in self.tanks:
            self.tanks[number] = _Tank(number, None)
        return self.tanks[number]

    def restore(self, deliveries: Iterable[EdgeDelivery]) -> None:
        """Detected deliveries still waiting when the collector stopped (stored:
        :class:`Detected`): decided at the next i202 read, as if never stopped."""
        for d in sorted(deliveries, key=lambda d: d.detected):
            pending = self._tank(d.tank).pending
            if d not in pending:
                pending.append(d)

    def rising(self, number: int) -> bool:
        return number in self.tanks and self.tanks[number].curve.rising

    def inventory(self, number: int, s: Sample) -> list[Finding]:
        """One reading of tank ``number``: the findings it completes."""
        t = self._tank(number)
        out: list[Finding] = []
        ended = t.curve.feed(s, self.settings)
        if ended is not None:
            delivery = self._measure(number, ended, detected=s.at)
            if delivery is not None:
                t.period_deliveries += delivery.volume
                t.pending.append(delivery)
                out.append(Detected(delivery))
                while len(t.pending) > MAX_PENDING:  # said, never dropped
                    out += self._unreported(t.pending.pop(0), {"gauge_report": "none read"})
        out += self._capacity(t, s)
        if number in self.configured:
            out += self._reconcile(t, s)
        return out

    def _measure(self, number: int, rise: _Rise, *, detected: datetime) -> EdgeDelivery | None:
        before, settled = rise.before, rise.settled
        start_level = _mean(x.level for x in before)
        volume = _mean(x.level for x in settled) - start_level
        if volume < self.settings.min_rise_l:
            return None
        first, last = before[-1], settled[-1]
        tc_before = [x.tc_level for x in before]
        tc_after = [x.tc_level for x in settled]
        tc: Decimal | None = None
        if all(v is not None for v in tc_before + tc_after):
            tc = _mean(v for v in tc_after if v is not None) - _mean(
                v for v in tc_before if v is not None
            )
        return EdgeDelivery(
            tank=number,
            start=first.at,
            end=rise.top.at,
            start_volume=first.volume,
            end_volume=last.volume,
            volume=volume,
            tc_volume=tc,
            sold_during=last.sold - first.sold,
            detected=detected,
        )

    def gauge_deliveries(
        self, number: int, report_at: datetime, intervals: Iterable[tuple[datetime, datetime]]
    ) -> list[Finding]:
        """An i202 read of tank ``number`` at console time ``report_at``: decide the
        pending edge deliveries detected before it (module doc)."""
        t = self._tank(number)
        for interval in intervals:
            if interval not in t.gauge:
                t.gauge.append(interval)
        out: list[Finding] = []
        waiting = []
        for d in t.pending:
            if d.detected > report_at:
                waiting.append(d)
                continue
            covered = any(
                g_start <= d.end + MATCH_SLACK and g_end >= d.start - MATCH_SLACK
                for g_start, g_end in t.gauge
            )
            out += self._unreported(d) if not covered else [Reconciled(d)]
        t.pending = waiting
        return out

    def _unreported(self, d: EdgeDelivery, more: Mapping[str, str] | None = None) -> list[Finding]:
        detail: dict[str, str | None] = {
            "started_at": d.start.isoformat(),
            "ended_at": d.end.isoformat(),
            "volume_l": _text(d.volume),
            **(more or {}),
        }
        return [Unreported(d), AlarmChange(d.tank, UNREPORTED_DELIVERY, True, d.end, detail)]

    def _capacity(self, t: _Tank, s: Sample) -> list[Finding]:
        if t.declared_l is None or t.capacity_raised:
            return []
        contents = s.volume + (s.water_volume or Decimal(0))
        tolerance = t.declared_l * self.settings.capacity_tolerance_pct / _PERCENT
        gauge_l = None if s.ullage is None else contents + s.ullage
        wrong_gauge = gauge_l is not None and abs(gauge_l - t.declared_l) > tolerance
        if not wrong_gauge and contents <= t.declared_l + tolerance:
            return []
        t.capacity_raised = True
        detail = {
            "declared_capacity_l": _text(t.declared_l),
            "gauge_capacity_l": _text(gauge_l),
            "contents_l": _text(contents),
        }
        return [AlarmChange(t.number, CAPACITY_MISMATCH, True, s.at, detail)]

    def _reconcile(self, t: _Tank, s: Sample) -> list[Finding]:
        first = t.period_first
        if first is None:
            t.period_first, t.period_deliveries = s, Decimal(0)
            return []
        if s.now_s - first.now_s < self.settings.period_s or t.curve.rising:
            return []
        sales = s.sold - first.sold
        delta = s.volume - first.volume
        variance = t.period_deliveries - sales - delta
        threshold = self.threshold(t.period_deliveries + sales)
        detail = {
            "period_start": first.at.isoformat(),
            "period_end": s.at.isoformat(),
            "deliveries_l": _text(t.period_deliveries),
            "sales_l": _text(sales),
            "delta_inventory_l": _text(delta),
            "variance_l": _text(variance),
            "threshold_l": _text(threshold),
        }
        t.period_first, t.period_deliveries = s, Decimal(0)
        beyond = abs(variance) > threshold
        if beyond == t.variance_raised:
            return []
        t.variance_raised = beyond
        return [AlarmChange(t.number, WETSTOCK_VARIANCE, beyond, s.at, detail)]

    def threshold(self, throughput: Decimal) -> Decimal:
        """The variance alarm threshold: the larger of the absolute one and the
        percentage of the period's throughput (deliveries + sales), as set."""
        cfg = self.settings
        limits = [cfg.variance_l] if cfg.variance_l is not None else []
        if cfg.variance_pct is not None:
            limits.append(throughput * cfg.variance_pct / _PERCENT)
        return max(limits)
