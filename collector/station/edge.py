"""Edge checks on every order (SPEC A1, A2, A7, A10), pure: no I/O, no clock.

The collector has the rawest data, so it flags what the platform's
analytics would look for, and the flags travel inside the order (``flags``
is part of the hashed record, so the checks run *before* the store commits
it) and as ``alarm`` records. Each finding is one :class:`Finding`; the codes
and their ``detail`` fields are listed in docs/alarms.md.

- **A1 totalizer continuity** — an order's totalizer start is what its own
  record implies (end − volume, collector/station/records.py). It must equal the
  previous order's end on that nozzle: more means fuel drawn with no order
  (``TOTALIZER_GAP``), less means the totalizer went back
  (``TOTALIZER_BACK``, tampering or a board swap). The amount totalizer is
  checked the same way where the protocol carries one.
- **A2 amount = price × volume** within the dispenser's rounding
  (``AMOUNT_MISMATCH``).
- **A7 order-count balance** — where the protocol numbers transactions with
  a per-pump counter (Sinopec POS_TTC), each order collected must be the
  previous one + 1; a jump means transactions the collector never saw
  (``ORDER_GAP``, with how many), a step back or a repeat a counter reset
  (``ORDER_COUNTER_BACK``).
- **A10 price below the floor** configured for the grade
  (``PRICE_BELOW_FLOOR``).

Plausibility (:func:`check_plausible`): a well-formed frame can still say
something no dispenser does — a sale of 167 772 L, a price of 0, a year
of 1970. The order is stored exactly as read and these flag it:

- ``VOLUME_BEYOND_FLOW`` — more litres than ``max_flow_l_per_min`` can
  deliver in the fill's duration as the gateway saw it (its lift to the
  hang-up or the sale's receipt, both on the gateway's clock, plus
  :data:`FLOW_SLACK_S`), or in ``longest_fill_s`` when the lift was not
  seen from an idle nozzle (a restart, a cut link, a tap joined mid-fill).
- ``PRICE_ZERO``, ``PRICE_ABOVE_CEILING`` — the price band of the grade
  (its ceiling from ``price_ceilings``, else ``price_max``; the floor is A10).
- ``ZERO_SALE`` — 0 L and 0 yuan from a protocol not listed in
  ``zero_sale_protocols``. The drivers that make a sale of a fill they
  watched drop one that moved nothing (DART, UDC, Furen, Uninfo, the
  totals pollers); a dispenser that keeps its own record of a lift without
  fuel is listed there by the station.
- ``PUMP_CLOCK_SKEW`` — the pump's ``ended_at`` further than
  ``pump_clock_skew_s`` from the gateway's clock: after the sale was
  received (no sale ends after it is read), away from the hang-up the
  gateway saw for this fill, or older than ``held_sale_max_age_s`` (a pump
  holds a sale for the collector only so long). The order keeps the pump's
  time; the finding carries the gateway's receive time beside it.
- ``GRADE_UNKNOWN`` — a grade not in ``grades`` (when the list is set).

``NOZZLE_UNKNOWN`` (a nozzle number outside the port's ``nozzles``) is
decided by the port's sink, which stores such a sale under the pump
(collector/station/sink.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from config.models import Config

#: Dispensers compute the amount from price × volume and round it to the
#: fen (0.01 yuan) — half up, down or to even depending on the make. Any of
#: those roundings stays within one fen of the exact product.
AMOUNT_TOLERANCE = Decimal("0.01")

#: Defaults of the plausibility rules (each a key of ``[edge]``; config/models_checks.py).
#: Flow: JJG 443-2023 covers dispensers of a maximum flow up to 200 L/min
#: (a vendor's summary of the regulation's scope, runyun888.cn/news/332.html;
#: not checked against the regulation's own text),
#: so no metered nozzle delivers more; a car nozzle is nearer 40–60 L/min —
#: a default to configure per station.
MAX_FLOW_L_PER_MIN = Decimal(200)
#: A fill whose lift the gateway did not see (before a restart, a cut link)
#: is allowed this long at the maximum flow. Unverified: dispensers end an
#: unattended fill much sooner; an hour passes any real one.
LONGEST_FILL_S = 3600
#: Beyond any grade's own ceiling: fuel sells for 5–10 yuan/L, hydrogen for
#: 30–70 yuan/kg; a price above 100 is a misread or a wrong decimal place.
PRICE_MAX = Decimal(100)
#: Pump and gateway clocks set by hand agree to a few minutes; further is a
#: wrong clock (a pump left on UTC is 8 h off at +08:00). Unverified: to
#: configure where the pumps are synchronised more tightly.
PUMP_CLOCK_SKEW_S = 300
#: A sale older than this when received is no sale a pump kept for us
#: (the collector was never away that long) but a wrong date: 1970, year 1000.
HELD_SALE_MAX_AGE_S = 30 * 86_400
#: The gateway sees a lift up to one idle poll late (1 s by default) and the
#: pump's own times are whole seconds: the flow rule allows this much more
#: time than the gateway measured, so a real fill is never flagged.
FLOW_SLACK_S = 5


@dataclass(frozen=True, slots=True)
class EdgeSettings:
    """What the checks compare against (``[edge]`` in the config)."""

    #: grade code → lowest plausible unit price (yuan/L), SPEC A10.
    price_floors: Mapping[str, Decimal] = field(default_factory=dict)
    amount_tolerance: Decimal = AMOUNT_TOLERANCE
    #: grade code → highest plausible unit price; other grades: ``price_max``.
    price_ceilings: Mapping[str, Decimal] = field(default_factory=dict)
    price_max: Decimal = PRICE_MAX
    max_flow_l_per_min: Decimal = MAX_FLOW_L_PER_MIN
    longest_fill_s: int = LONGEST_FILL_S
    pump_clock_skew_s: int = PUMP_CLOCK_SKEW_S
    held_sale_max_age_s: int = HELD_SALE_MAX_AGE_S
    #: The grades the station sells; empty: any grade is known.
    grades: frozenset[str] = frozenset()
    #: Protocols whose dispensers record a lift without fuel as a 0 L sale.
    zero_sale_protocols: frozenset[str] = frozenset()

    @classmethod
    def from_config(cls, cfg: Config) -> EdgeSettings:
        """From ``[edge]`` (SPEC A2, A10; plausibility): at start and on a live
        ``config.set``."""
        e = cfg.edge
        return cls(
            price_floors={g: Decimal(str(p)) for g, p in e.price_floors.items()},
            amount_tolerance=Decimal(str(e.amount_tolerance)),
            price_ceilings={g: Decimal(str(p)) for g, p in e.price_ceilings.items()},
            price_max=Decimal(str(e.price_max)),
            max_flow_l_per_min=Decimal(str(e.max_flow_l_per_min)),
            longest_fill_s=e.longest_fill_s,
            pump_clock_skew_s=e.pump_clock_skew_s,
            held_sale_max_age_s=e.held_sale_max_age_s,
            grades=frozenset(e.grades),
            zero_sale_protocols=frozenset(e.zero_sale_protocols),
        )


@dataclass(frozen=True, slots=True)
class Finding:
    code: str
    detail: dict[str, Any]


def _dec(value: Any) -> Decimal | None:
    if value is None:
        return None
    try:
        return Decimal(str(value))
    except InvalidOperation:
        return None


def _s(value: Decimal) -> str:
    return format(value, "f")


def check_order(
    order: Mapping[str, Any],
    previous: Mapping[str, Any] | None,
    settings: EdgeSettings,
) -> list[Finding]:
    """Findings for ``order`` given the previous order of the same nozzle."""
    findings: list[Finding] = []
    if previous is not None:
        findings.extend(_continuity(order, previous, "volume"))
        findings.extend(_continuity(order, previous, "amount"))
    price, volume, amount = (_dec(order.get(k)) for k in ("price", "volume", "amount"))
    if price is not None and volume is not None and amount is not None:
        expected = price * volume
        if abs(expected - amount) > settings.amount_tolerance:
            findings.append(
                Finding(
                    "AMOUNT_MISMATCH",
                    {
                        "price": _s(price),
                        "volume": _s(volume),
                        "amount": _s(amount),
                        "expected": _s(expected.quantize(Decimal("0.01"))),
                    },
                )
            )
    floor = settings.price_floors.get(str(order.get("grade")))
    if floor is not None and price is not None and 0 < price < floor:
        findings.append(
            Finding(
                "PRICE_BELOW_FLOOR",
                {"grade": order.get("grade"), "price": _s(price), "floor": _s(floor)},
            )
        )
    return findings


def _continuity(order: Mapping[str, Any], previous: Mapping[str, Any], which: str) -> list[Finding]:
    start = _dec(order.get(f"totalizer_{which}_start"))
    last_end = _dec(previous.get(f"totalizer_{which}_end"))
    if start is None or last_end is None or start == last_end:
        return []
    code = "TOTALIZER_GAP" if start > last_end else "TOTALIZER_BACK"
    detail = {
        "totalizer": which,
        "previous_end": _s(last_end),
        "start": _s(start),
        "difference": _s(start - last_end),
        "previous_rid": previous.get("rid"),
    }
    return [Finding(code, detail)]


def check_counter(counter: int | None, previous: int | None) -> list[Finding]:
    """A7: the pump's transaction counter against the last order collected from it."""
    if counter is None or previous is None or counter == previous + 1:
        return []
    if counter > previous + 1:
        missing = counter - previous - 1
        detail = {"previous": previous, "counter": counter, "missing": missing}
        return [Finding("ORDER_GAP", detail)]
    return [Finding("ORDER_COUNTER_BACK", {"previous": previous, "counter": counter})]


@dataclass(frozen=True, slots=True)
class SaleTimes:
    """A sale's times, all aware. ``ended_at`` is the pump's clock; the rest
    the gateway's: when it received the sale, and the lift and hang-up of
    this fill when it saw them (the lift only when seen from an idle nozzle:
    one first seen mid-fill would shorten the duration)."""

    ended_at: datetime
    received_at: datetime
    lifted_at: datetime | None = None
    hung_up_at: datetime | None = None


def _iso(at: datetime | None) -> str | None:
    return None if at is None else at.isoformat(timespec="milliseconds")


def check_plausible(
    order: Mapping[str, Any], times: SaleTimes, settings: EdgeSettings, protocol: str
) -> list[Finding]:
    """What no dispenser reports (module doc); the order is stored as it is."""
    findings: list[Finding] = []
    price, volume, amount = (_dec(order.get(k)) for k in ("price", "volume", "amount"))
    grade = str(order.get("grade"))
    if volume is not None:
        findings.extend(_flow(volume, times, settings))
    if price is not None:
        ceiling = settings.price_ceilings.get(grade, settings.price_max)
        if price == 0:
            findings.append(Finding("PRICE_ZERO", {"grade": grade, "price": _s(price)}))
        elif price > ceiling:
            detail = {"grade": grade, "price": _s(price), "ceiling": _s(ceiling)}
            findings.append(Finding("PRICE_ABOVE_CEILING", detail))
    if volume == 0 and amount == 0 and protocol not in settings.zero_sale_protocols:
        findings.append(Finding("ZERO_SALE", {"protocol": protocol}))
    skew = _skew(times, settings)
    if skew is not None:
        findings.append(skew)
    if settings.grades and grade not in settings.grades:
        findings.append(Finding("GRADE_UNKNOWN", {"grade": grade}))
    return findings


def _flow(volume: Decimal, times: SaleTimes, settings: EdgeSettings) -> list[Finding]:
    if times.lifted_at is not None:
        end = times.hung_up_at or times.received_at
        seen_ms = max(0, (end - times.lifted_at) // timedelta(milliseconds=1))
        basis, duration_s = "seen", Decimal(seen_ms) / 1000 + FLOW_SLACK_S
    else:
        basis, duration_s = "longest_fill", Decimal(settings.longest_fill_s)
    limit = settings.max_flow_l_per_min * duration_s / 60
    if volume <= limit:
        return []
    detail = {
        "volume": _s(volume),
        "duration_s": _s(duration_s),
        "basis": basis,
        "max_flow_l_per_min": _s(settings.max_flow_l_per_min),
        "limit": _s(limit.quantize(Decimal("0.01"))),
    }
    return [Finding("VOLUME_BEYOND_FLOW", detail)]


def _skew(times: SaleTimes, settings: EdgeSettings) -> Finding | None:
    threshold = timedelta(seconds=settings.pump_clock_skew_s)
    ended, received, hung_up = times.ended_at, times.received_at, times.hung_up_at
    if ended > received + threshold:
        reference, against = received, "received_at"
    elif hung_up is not None and abs(ended - hung_up) > threshold:
        reference, against = hung_up, "hung_up_at"
    elif ended < received - timedelta(seconds=settings.held_sale_max_age_s):
        reference, against = received, "received_at"
    else:
        return None
    detail = {
        "ended_at": _iso(ended),
        "received_at": _iso(received),
        "hung_up_at": _iso(hung_up),
        "against": against,
        "offset_ms": (ended - reference) // timedelta(milliseconds=1),
        "threshold_s": settings.pump_clock_skew_s,
    }
    return Finding("PUMP_CLOCK_SKEW", detail)
