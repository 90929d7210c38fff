"""The wet-stock checks (SPEC A3, A4, A5, A8) on synthetic tank curves.

A station is simulated minute by minute: sales drain the tank while a fill
runs and are committed (``sold``) only at its end, as orders are; a
delivery pours at a constant rate; the probe adds seeded noise.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from decimal import Decimal

from collector.station.wetstock import (
    CAPACITY_MISMATCH,
    UNREPORTED_DELIVERY,
    WETSTOCK_VARIANCE,
    AlarmChange,
    Detected,
    Finding,
    Reconciled,
    Sample,
    Unreported,
    Wetstock,
    WetstockSettings,
)

T0 = datetime(2026, 3, 1, 8, 0)
STEP_S = 60  # one inventory reading per console minute

SETTINGS = WetstockSettings(
    min_rise_l=Decimal(200),
    noise_l=Decimal(20),
    settle_s=300,
    period_s=3600,
    variance_l=Decimal(50),
    variance_pct=None,
    capacity_tolerance_pct=Decimal(2),
)


class Station:
    """One tank, its sales and deliveries, read once a minute."""

    def __init__(self, *, volume: float = 10_000, noise_l: float = 0.0, seed: int = 1) -> None:
        self.volume = volume
        self.sold = Decimal(0)
        self.minute = 0
        self.noise_l = noise_l
        self.rng = random.Random(seed)
        self.wetstock = Wetstock(SETTINGS, {1: Decimal(39_270)})
        self.findings: list[Finding] = []
        #: Detected / Reconciled: what the gauge task stores and forgets meanwhile.
        self.waiting: list[Finding] = []

    def take(self, findings: list[Finding]) -> None:
        for f in findings:
            (self.waiting if isinstance(f, Detected | Reconciled) else self.findings).append(f)

    def sample(self) -> Sample:
        noise = self.rng.uniform(-self.noise_l, self.noise_l)
        volume = Decimal(str(round(self.volume + noise, 2)))
        ullage = Decimal(str(round(39_270 - self.volume, 2)))
        return Sample(
            at=T0 + timedelta(seconds=self.minute * STEP_S),
            now_s=float(self.minute * STEP_S),
            volume=volume,
            sold=self.sold,
            tc_volume=volume * Decimal("0.994"),
            ullage=ullage,
            water_volume=Decimal(0),
        )

    def run(
        self,
        minutes: int,
        *,
        pour_lpm: float = 0.0,
        sale_every: int = 0,
        sale_l: float = 40.0,
        hidden_lpm: float = 0.0,
    ) -> None:
        """``minutes`` of station life; each fill drains over its minutes and is
        committed as an order at its end (the lag the checks must tolerate)."""
        for _ in range(minutes):
            self.minute += 1
            self.volume += pour_lpm - hidden_lpm
            if sale_every:
                self.volume -= sale_l / sale_every
                if self.minute % sale_every == 0:
                    self.sold += Decimal(str(sale_l))
            self.take(self.wetstock.inventory(1, self.sample()))

    def gauge_read(self, intervals: list[tuple[datetime, datetime]]) -> None:
        at = T0 + timedelta(seconds=self.minute * STEP_S)
        self.take(self.wetstock.gauge_deliveries(1, at, intervals))

    def alarms(self, code: str) -> list[AlarmChange]:
        return [f for f in self.findings if isinstance(f, AlarmChange) and f.code == code]


def test_delivery_during_sales_is_measured_within_one_percent() -> None:
    st = Station(noise_l=3.0)
    st.run(30, sale_every=3)
    st.run(20, pour_lpm=400, sale_every=3)  # 8000 L over 20 minutes, sales go on
    st.run(30, sale_every=3)
    st.gauge_read([])  # the console reported nothing
    [unreported] = [f for f in st.findings if isinstance(f, Unreported)]
    d = unreported.delivery
    assert abs(d.volume - 8000) / 8000 < Decimal("0.01"), d.volume
    assert d.start == T0 + timedelta(minutes=30)
    # The end is the last climbing reading: an order committed just after the
    # pour stopped can lift the sales-corrected level one reading later.
    assert T0 + timedelta(minutes=50) <= d.end <= T0 + timedelta(minutes=51)
    assert d.tc_volume is not None and abs(d.tc_volume - Decimal("7952")) < 80
    assert d.sold_during > 200  # sales were counted back in
    [alarm] = st.alarms(UNREPORTED_DELIVERY)
    assert alarm.raised and alarm.detail["started_at"] == "2026-03-01T08:30:00"


def test_a_reported_delivery_is_not_flagged() -> None:
    st = Station()
    st.run(30)
    st.run(20, pour_lpm=400)
    st.run(10)
    st.gauge_read([(T0 + timedelta(minutes=31), T0 + timedelta(minutes=50))])
    assert st.findings == []
    detected, reconciled = st.waiting  # stored while it waited, forgotten once matched
    assert isinstance(detected, Detected) and reconciled == Reconciled(detected.delivery)


def test_a_detected_delivery_survives_a_restart_and_is_decided_after_it() -> None:
    """What the gauge task stored for a detected delivery comes back after a
    restart (Wetstock.restore) and the next i202 read decides it."""
    from collector.station.wetstock import delivery_fields, delivery_from

    st = Station()
    st.run(30)
    st.run(20, pour_lpm=400)
    st.run(10)
    [detected] = st.waiting
    assert isinstance(detected, Detected)
    stored = delivery_fields(detected.delivery)
    restarted = Wetstock(SETTINGS, {1: Decimal(39_270)})
    restarted.restore([delivery_from(stored)])
    at = T0 + timedelta(minutes=61)
    [unreported, alarm] = restarted.gauge_deliveries(1, at, [])
    assert unreported == Unreported(detected.delivery)
    assert isinstance(alarm, AlarmChange) and alarm.code == UNREPORTED_DELIVERY


def test_deliveries_the_gauge_never_reports_are_decided_not_dropped() -> None:
    """A console that never answers i202: past MAX_PENDING waiting on a tank the
    oldest is decided unreported, said so in the alarm — none vanishes."""
    from collector.station.wetstock import MAX_PENDING

    st = Station(volume=2_000)
    for _ in range(MAX_PENDING + 1):
        st.run(10)
        st.run(3, pour_lpm=400)
    st.run(10)
    detected = [f for f in st.waiting if isinstance(f, Detected)]
    assert len(detected) == MAX_PENDING + 1
    [unreported] = [f for f in st.findings if isinstance(f, Unreported)]
    assert unreported.delivery == detected[0].delivery
    [alarm] = st.alarms(UNREPORTED_DELIVERY)
    assert alarm.detail["gauge_report"] == "none read"


def test_an_edge_delivery_waits_for_the_next_gauge_read() -> None:
    st = Station()
    st.run(30)
    st.run(20, pour_lpm=400)
    st.run(10)
    early = T0 + timedelta(minutes=40)  # an i202 read from before the detection
    assert st.wetstock.gauge_deliveries(1, early, []) == []
    st.gauge_read([])
    assert [type(f) for f in st.findings] == [Unreported, AlarmChange]


def test_noise_and_late_committed_sales_make_no_delivery() -> None:
    st = Station(noise_l=8.0, seed=3)
    st.run(600, sale_every=4, sale_l=60)  # ten hours of busy station
    st.gauge_read([])
    assert [f for f in st.findings if not isinstance(f, AlarmChange)] == []
    assert st.alarms(UNREPORTED_DELIVERY) == []


def test_small_rise_below_the_minimum_is_not_a_delivery() -> None:
    st = Station()
    st.run(10)
    st.run(3, pour_lpm=50)  # 150 L < 200 L
    st.run(20)
    st.gauge_read([])
    assert st.findings == []


def test_capacity_mismatch_is_raised_once() -> None:
    wetstock = Wetstock(SETTINGS, {1: Decimal(30_000), 2: Decimal(39_270)})
    findings: list[Finding] = []
    for minute in range(3):
        at = T0 + timedelta(minutes=minute)
        for tank in (1, 2):
            sample = Sample(
                at=at,
                now_s=minute * 60.0,
                volume=Decimal(20_000),
                sold=Decimal(0),
                ullage=Decimal("19170.00"),
                water_volume=Decimal(100),
            )
            findings += wetstock.inventory(tank, sample)
    assert findings == [
        AlarmChange(
            1,
            CAPACITY_MISMATCH,
            True,
            T0,
            {
                "declared_capacity_l": "30000.00",
                "gauge_capacity_l": "39270.00",
                "contents_l": "20100.00",
            },
        )
    ]


def test_contents_beyond_the_declared_capacity_are_a_mismatch() -> None:
    wetstock = Wetstock(SETTINGS, {1: Decimal(30_000)})
    sample = Sample(T0, 0.0, Decimal(31_000), Decimal(0), ullage=None, water_volume=None)
    [alarm] = wetstock.inventory(1, sample)
    assert isinstance(alarm, AlarmChange) and alarm.code == CAPACITY_MISMATCH


def test_reconciliation_honest_hidden_sale_then_honest_again() -> None:
    st = Station(noise_l=2.0)
    st.run(61, sale_every=3)  # period 1: sales only, all recorded
    assert st.alarms(WETSTOCK_VARIANCE) == []
    st.run(20, sale_every=3)
    st.run(20, pour_lpm=400, sale_every=3)  # period 2: a delivery and sales
    st.run(20, sale_every=3)
    assert st.alarms(WETSTOCK_VARIANCE) == []
    st.run(30, sale_every=3)
    st.run(10, sale_every=3, hidden_lpm=30)  # 300 L leave without an order
    st.run(25, sale_every=3)
    [raised] = st.alarms(WETSTOCK_VARIANCE)
    assert raised.raised
    variance = Decimal(str(raised.detail["variance_l"]))
    assert abs(variance - 300) < 30, raised.detail
    assert raised.detail["threshold_l"] == "50.00"
    sales = Decimal(str(raised.detail["sales_l"]))
    delta = Decimal(str(raised.detail["delta_inventory_l"]))
    assert Decimal(str(raised.detail["deliveries_l"])) - sales - delta == variance
    st.run(61, sale_every=3)  # an honest period clears it
    assert [a.raised for a in st.alarms(WETSTOCK_VARIANCE)] == [True, False]


def test_threshold_is_the_larger_of_litres_and_percent() -> None:
    settings = WetstockSettings(
        Decimal(200), Decimal(20), 300, 3600, Decimal(50), Decimal("0.5"), Decimal(2)
    )
    wetstock = Wetstock(settings, {})
    assert wetstock.threshold(Decimal(1000)) == 50
    assert wetstock.threshold(Decimal(40_000)) == 200
