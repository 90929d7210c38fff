"""A TLS-350-like tank gauge console, sans-IO: command bytes in, response bytes out.

``Console(tanks, clock).handle(command)`` answers one command (§5 of the 3xx
manual 576013-635): ``SOH [security code] iXXXTT``, trailing CR LF tolerated.
It serves the computer-format inquiries i201, i202, i20C, i205, i206, i207,
i208, i101 and i604 (tank full volume = the *declared* capacity); anything
else — set commands, display format, unknown codes, a ``TT`` that is not two
digits or above :data:`MAX_DEVICE` — gets ``SOH 9999FF1B ETX``. With a
security code set, a command without the right code gets no answer at all
(§5). ``TT`` 00 = every tank; an unconfigured tank number up to
:data:`MAX_DEVICE` is an inactive device, answered with ``?`` (§7.0).

Time: every answer first advances the simulation to ``clock()`` (naive,
the console's wall clock) in steps of at most :data:`MAX_STEP_S`, split
exactly at delivery and leak-test ends. Deliveries pour at a constant rate
over their minutes; a record (start/end snapshots) is stored when one ends,
most recent first, at most :data:`MAX_DELIVERIES` per tank — unless it is
*hidden* (A3: the console missed it): then no status bit, no record, only
the level rises. Every delivery ends up in the ground truth
(:meth:`Console.pop_truth`), hidden ones marked ``"hidden": true``.

Leak tests (i207/i208): ``start_leak_test`` sets status bit 2 and alarm 20
for its hours; the measured rate is the true leak (litres per hour,
negative = loss); a sale or delivery during the test makes it INVALID;
PASSED when the loss is within the test type's limit
(:data:`LEAK_LIMITS_LPH`). i207 keeps the last and the fullest passed test
and the fullest passed per month; i208 the last result per test type.

Alarms (i205, i101 AA=02, i206 history) come from thresholds against the
console's (declared) capacity: :func:`tank_alarms`.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from hil.atg import render
from hil.atg.tank import SimTank

#: §7.0: single devices are numbered 01 through 16 on a TLS-350.
MAX_DEVICE = 16
#: §5: the RS-232 security code is six characters.
SECURITY_CODE_LEN = 6
#: Longest simulation step: temperature and pours are integrated linearly
#: per step, a minute keeps that error far below float32 resolution.
MAX_STEP_S = 60.0
#: Delivery records kept per tank: the display example lists several, most
#: recent first; the manual gives no number; 10 bounds the i202 response.
MAX_DELIVERIES = 10
#: Alarm history entries kept per tank (i206), most recent first.
MAX_ALARM_HISTORY = 20
#: Daily swing of the ground temperature around a tank's mean, °C (buried).
DAILY_SWING_C = 0.5
#: Leak test limits, L/h: 0.20 gal/h, 0.10 gal/h and gross 3 gal/h (§7.2.2 i207 tt).
LEAK_LIMITS_LPH = {0: 0.2 * 3.785, 1: 0.1 * 3.785, 2: 3.0 * 3.785}
#: Alarm thresholds, fractions of the declared capacity, and water heights.
OVERFILL_FRACTION = 0.90
HIGH_PRODUCT_FRACTION = 0.95
MAX_PRODUCT_FRACTION = 1.00
DELIVERY_NEEDED_FRACTION = 0.15
LOW_PRODUCT_FRACTION = 0.05
HIGH_WATER_WARNING_MM = 38.0  # 1.5 in, a common TLS setting
HIGH_WATER_ALARM_MM = 50.0  # 2 in

STATUS_DELIVERY = 0x0001
STATUS_LEAK_TEST = 0x0002


@dataclass
class SimDelivery:
    tank: int
    litres: float
    start: datetime
    end: datetime
    temperature_c: float
    water_l: float
    hidden: bool
    poured: float = 0.0
    before: dict[str, float] = field(default_factory=dict)


@dataclass
class SimLeakTest:
    tank: int
    start: datetime
    hours: float
    test_type: int
    manifolded: bool
    volume: float
    leaked: float = 0.0
    disturbed: bool = False

    @property
    def end(self) -> datetime:
        return self.start + timedelta(hours=self.hours)


def snapshot(t: SimTank) -> dict[str, float]:
    """The seven i201 values, in i201 order, exactly as the console sends them."""
    values = {
        "volume": t.volume_l,
        "tc_volume": t.tc_volume_l(),
        "ullage": t.ullage_l(),
        "height": t.level_mm(),
        "water": t.water_mm(),
        "temperature": t.temperature_c,
        "water_volume": t.water_l,
    }
    return {k: render.f32_round(v) for k, v in values.items()}


class Console:
    def __init__(
        self,
        tanks: list[SimTank],
        clock: Callable[[], datetime],
        *,
        security_code: str | None = None,
    ) -> None:
        if not 1 <= len(tanks) <= MAX_DEVICE:
            raise ValueError(f"a console has 1..{MAX_DEVICE} tanks")
        if security_code is not None and len(security_code) != SECURITY_CODE_LEN:
            raise ValueError("the security code has 6 characters")
        self.tanks = {t.number: t for t in tanks}
        self.clock = clock
        self.security_code = security_code.encode("ascii") if security_code else None
        self.now = clock()
        self.deliveries: dict[int, deque[tuple[datetime, datetime, list[float]]]] = {
            n: deque(maxlen=MAX_DELIVERIES) for n in self.tanks
        }
        self.active: list[SimDelivery] = []
        self.tests: dict[int, SimLeakTest] = {}
        self.results: dict[int, dict[int, tuple[datetime, int, float, float, float, int]]] = {
            n: {} for n in self.tanks
        }
        self.passed: dict[int, list[render.Leak]] = {n: [] for n in self.tanks}
        self.alarm_log: dict[int, deque[tuple[datetime, int]]] = {
            n: deque(maxlen=MAX_ALARM_HISTORY) for n in self.tanks
        }
        self._raised: dict[int, set[int]] = {n: set() for n in self.tanks}
        self._truth: list[dict[str, Any]] = []
        self._note_alarms()

    # ------------------------------------------------------------ commands

    def handle(self, command: bytes) -> bytes:
        """The response to one command (SOH first); b"" when the console stays silent."""
        if not command.startswith(b"\x01"):
            return b""  # ESC or noise: nothing to answer
        body = command[1:].rstrip(b"\r\n")
        if self.security_code is not None:
            if body[:SECURITY_CODE_LEN] != self.security_code:
                return b""  # §5: no response without the proper security code
            body = body[SECURITY_CODE_LEN:]
        function = body.decode("ascii", errors="replace")
        code, tt = function[:4], function[4:]
        renderer = self._renderers().get(code)
        if renderer is None or len(tt) != 2 or not ("0" <= tt[0] <= "9" and "0" <= tt[1] <= "9"):
            return render.UNKNOWN
        device = int(tt)
        if device > MAX_DEVICE or (code == "i101" and device != 0):
            return render.UNKNOWN
        self.advance(self.clock())
        records = []
        for n in sorted(self.tanks) if device == 0 else [device]:
            records.append(renderer(n) if n in self.tanks else self._inactive(n, code))
        if code == "i101":
            records = [self._system_status()]
        return render.frame(function, render.stamp(self.now) + "".join(records))

    def _renderers(self) -> dict[str, Callable[[int], str]]:
        return {
            "i201": self._i201,
            "i202": lambda n: self._i202(n, MAX_DELIVERIES),
            "i20C": lambda n: self._i202(n, 1),
            "i205": lambda n: render.tank_status(n, tank_alarms(self, n)),
            "i206": lambda n: render.alarm_history(n, list(self.alarm_log[n])),
            "i207": lambda n: render.leak_history(n, self._i207(n)),
            "i208": lambda n: render.leak_results(n, self._i208(n)),
            "i101": lambda n: "",
            "i604": lambda n: f"{n:02d}{render.f32(self.tanks[n].declared_capacity_l)}",
        }

    def _inactive(self, n: int, code: str) -> str:
        return "" if code == "i101" else render.inactive(n, code)

    def _i201(self, n: int) -> str:
        t = self.tanks[n]
        status = STATUS_LEAK_TEST if n in self.tests else 0
        if any(d.tank == n and not d.hidden for d in self.active):
            status |= STATUS_DELIVERY
        return render.inventory(n, t.product, status, snapshot(t).values())

    def _i202(self, n: int, count: int) -> str:
        return render.deliveries(n, self.tanks[n].product, list(self.deliveries[n])[:count])

    def _i207(self, n: int) -> list[render.Leak]:
        passed = self.passed[n]
        if not passed:
            return []
        entries = [(0, 1, *passed[-1][2:])]  # RR 00 last passed, nn = 1
        entries.append((1, 1, *max(passed, key=lambda e: e[5])[2:]))  # RR 01 fullest
        months: dict[int, render.Leak] = {}
        for e in passed:  # RR 02: fullest periodic (non-gross) test of each month
            if e[2] != 2 and (e[3].month not in months or e[5] > months[e[3].month][5]):
                months[e[3].month] = (2, e[3].month, *e[2:])
        return entries + [months[m] for m in sorted(months)]

    def _i208(self, n: int) -> list[render.Result]:
        return [
            (tt, manifold, start, rr, rate, hours, volume)
            for tt, (start, rr, rate, hours, volume, manifold) in sorted(self.results[n].items())
        ]

    def _system_status(self) -> str:
        return "".join(
            f"02{code:02d}{n:02d}" for n in sorted(self.tanks) for code in tank_alarms(self, n)
        )

    # ------------------------------------------------------------ the world

    def drain(self, tank: int, litres: float) -> float:
        """Sales (or any withdrawal) from ``tank``: returns litres actually taken."""
        self.advance(self.clock())
        if tank in self.tests:
            self.tests[tank].disturbed = True
        taken = self.tanks[tank].drain(litres)
        self._note_alarms()
        return taken

    def start_delivery(
        self,
        tank: int,
        litres: float,
        minutes: float,
        *,
        temperature_c: float | None = None,
        water_l: float = 0.0,
        hidden: bool = False,
    ) -> SimDelivery:
        self.advance(self.clock())
        t = self.tanks[tank]
        if litres <= 0 or minutes <= 0 or litres + water_l > t.room_l():
            raise ValueError(f"tank {tank}: delivery of {litres} L does not fit or is empty")
        end = self.now + timedelta(minutes=minutes)
        temp = t.temperature_c + 3.0 if temperature_c is None else temperature_c
        d = SimDelivery(tank, litres, self.now, end, temp, water_l, hidden, before=snapshot(t))
        self.active.append(d)
        if tank in self.tests:
            self.tests[tank].disturbed = True
        return d

    def start_leak_test(
        self, tank: int, hours: float, test_type: int = 0, *, manifolded: bool = False
    ) -> None:
        self.advance(self.clock())
        if test_type not in LEAK_LIMITS_LPH or hours <= 0 or tank in self.tests:
            raise ValueError(f"tank {tank}: cannot start a type {test_type} test")
        volume = self.tanks[tank].volume_l
        self.tests[tank] = SimLeakTest(tank, self.now, hours, test_type, manifolded, volume)
        self._note_alarms()

    def set_alarm(self, tank: int, code: int, active: bool = True) -> None:
        """Force an alarm the model does not produce itself (probe out, sudden loss …)."""
        (self.tanks[tank].forced_alarms.add if active else self.tanks[tank].forced_alarms.discard)(
            code
        )
        self._note_alarms()

    def pop_truth(self) -> list[dict[str, Any]]:
        """Ground-truth events since the last call (one per finished delivery)."""
        out, self._truth = self._truth, []
        return out

    def advance(self, now: datetime) -> None:
        """Run the simulation up to ``now`` (never backwards)."""
        while self.now < now:
            due = [d.end for d in self.active] + [t.end for t in self.tests.values()]
            step = min([now, self.now + timedelta(seconds=MAX_STEP_S), *due])
            self._step((step - self.now).total_seconds())
            self.now = step
            self._finish(step)
        self._note_alarms()

    def _step(self, seconds: float) -> None:
        hour = self.now.hour + self.now.minute / 60
        swing = DAILY_SWING_C * math.sin(2 * math.pi * (hour - 9) / 24)
        for n, t in self.tanks.items():
            t.relax(seconds, t.ground_c + swing)
            if t.leak_lph > 0:
                lost = t.drain(t.leak_lph * seconds / 3600)
                if n in self.tests:
                    self.tests[n].leaked += lost
        for d in self.active:
            duration = (d.end - d.start).total_seconds()
            share = min(d.litres - d.poured, d.litres * seconds / duration)
            d.poured += self.tanks[d.tank].pour(
                share, d.temperature_c, d.water_l * share / d.litres
            )

    def _finish(self, now: datetime) -> None:
        for d in [d for d in self.active if d.end <= now]:
            self.active.remove(d)
            t = self.tanks[d.tank]
            if d.litres - d.poured > 0:  # float residue of the per-step shares
                d.poured += t.pour(d.litres - d.poured, d.temperature_c)
            after = snapshot(t)
            b = d.before
            values = [b["volume"], b["tc_volume"], b["water"], b["temperature"]]
            values += [after["volume"], after["tc_volume"], after["water"], after["temperature"]]
            values += [b["height"], after["height"]]
            if not d.hidden:
                self.deliveries[d.tank].appendleft((d.start, d.end, values))
            self._truth.append(
                {
                    "event": "delivery",
                    "tank": d.tank,
                    "product": t.product,
                    "start": d.start.isoformat(),
                    "end": d.end.isoformat(),
                    "litres": round(d.poured, 3),
                    "start_volume_l": round(b["volume"], 3),
                    "end_volume_l": round(after["volume"], 3),
                    "hidden": d.hidden,
                }
            )
        for n, test in list(self.tests.items()):
            if test.end <= now:
                del self.tests[n]
                self._conclude(test)

    def _conclude(self, test: SimLeakTest) -> None:
        rate = -test.leaked / test.hours
        passed = -rate <= LEAK_LIMITS_LPH[test.test_type]
        result = 0 if test.disturbed else 1 if passed else 2  # INVALID / PASSED / FAILED
        manifold = int(test.manifolded)
        self.results[test.tank][test.test_type] = (
            test.start,
            result,
            rate,
            test.hours,
            test.volume,
            manifold,
        )
        if result == 1:
            percent = 100 * test.volume / self.tanks[test.tank].declared_capacity_l
            entry = (0, 1, test.test_type, test.start, test.hours, test.volume, percent)
            self.passed[test.tank].append(entry)

    def _note_alarms(self) -> None:
        for n in self.tanks:
            current = set(tank_alarms(self, n))
            for code in sorted(current - self._raised[n]):
                self.alarm_log[n].appendleft((self.now, code))
            self._raised[n] = current


def tank_alarms(console: Console, n: int) -> list[int]:
    """Active i205 codes of tank ``n`` (numbers of the i101 AA=02 table)."""
    t = console.tanks[n]
    cap = t.declared_capacity_l
    total = t.volume_l + t.water_l
    codes = set(t.forced_alarms)
    water = t.water_mm()
    if water >= HIGH_WATER_ALARM_MM:
        codes.add(3)
    elif water >= HIGH_WATER_WARNING_MM:
        codes.add(10)
    for fraction, code in (
        (OVERFILL_FRACTION, 4),
        (HIGH_PRODUCT_FRACTION, 7),
        (MAX_PRODUCT_FRACTION, 12),
    ):
        if total >= fraction * cap:
            codes.add(code)
    if t.volume_l <= LOW_PRODUCT_FRACTION * cap:
        codes.add(5)
    elif t.volume_l <= DELIVERY_NEEDED_FRACTION * cap:
        codes.add(11)
    if n in console.tests:
        codes.add(20)
    for test_type, (_, result, *_rest) in console.results[n].items():
        if result == 2:
            codes.add(13 if test_type == 2 else 14)
    return sorted(codes)
