"""Edge checks on every order (SPEC A1, A2, A7, A10), pure: no I/O, no clock.

The collector has the rawest data, so it flags what the platform's
analytics would look for, and the flags travel inside the order (``flags``
is part of the hashed record, so the checks run *before* the store commits
it) and as ``alarm`` records. Each finding is one :class:`Finding`; the codes
and their ``detail`` fields are listed in docs/alarms.md.

- **A1 totalizer continuity** — an order's totalizer start is what its own
  record implies (end − volume, collector/records.py). It must equal the
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
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

#: Dispensers compute the amount from price × volume and round it to the
#: fen (0.01 yuan) — half up, down or to even depending on the make. Any of
#: those roundings stays within one fen of the exact product.
AMOUNT_TOLERANCE = Decimal("0.01")


@dataclass(frozen=True, slots=True)
class EdgeSettings:
    """What the checks compare against (``[edge]`` in the config)."""

    #: grade code → lowest plausible unit price (yuan/L), SPEC A10.
    price_floors: Mapping[str, Decimal] = field(default_factory=dict)
    amount_tolerance: Decimal = AMOUNT_TOLERANCE


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
    if floor is not None and price is not None and price < floor:
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
