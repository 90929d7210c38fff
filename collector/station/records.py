"""Turn normalised driver events into the platform's record bodies.

Pure functions: no I/O, no clock reads (the caller passes times), so the
shape of every field the regulator receives is pinned by unit tests.
Money and volume leave here as decimal strings (platform-interface.md).
"""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

from protocols.events import Sale


def nozzle_key(port: int, address: int, nozzle: int) -> str:
    """Stable nozzle key: ``p03.a1.n2`` = port 3, bus address 1, nozzle 2."""
    return f"p{port:02d}.a{address}.n{nozzle}"


def source_key(port: int, address: int, nozzle: int | None) -> str:
    """A nozzle's key, or the pump's own (``p03.a1``) for a pump-wide report."""
    if nozzle is None:
        return f"p{port:02d}.a{address}"
    return nozzle_key(port, address, nozzle)


def iso(dt: datetime) -> str:
    """ISO 8601 with milliseconds and the offset (``2026-11-22T08:15:02.120+08:00``)."""
    if dt.tzinfo is None:
        raise ValueError("refusing to format a naive datetime: its offset would be a guess")
    return dt.isoformat(timespec="milliseconds")


def decimal_str(value: Decimal | None) -> str | None:
    """A decimal string exactly as the dispenser's digits carried it."""
    return None if value is None else format(value, "f")


def order_fields(
    sale: Sale,
    *,
    station: str,
    tz: timezone,
    started_at: datetime | None,
    nozzle_uid: str | None = None,
    flags: list[str] | None = None,
) -> dict[str, Any]:
    """The order body (SPEC D1) without the fields the store assigns.

    The store adds ``rid``, ``nozzle``, ``nseq``, ``prev`` and ``h`` in the
    transaction that commits the order. ``totalizer_volume_start`` is what
    the dispenser's own record implies (end − volume); the edge checks
    compare it with the previous order's end (SPEC A1). Both are null when
    the sale came without a totalizer (a passive monitor whose controller
    did not read one).
    """
    start = None if sale.totalizer_volume_end is None else sale.totalizer_volume_end - sale.volume
    amount_start = (
        None if sale.totalizer_amount_end is None else sale.totalizer_amount_end - sale.amount
    )
    return {
        "nozzle_uid": nozzle_uid,
        "order_no": sale.order_no,
        "station": station,
        "grade": sale.grade,
        "price": decimal_str(sale.price),
        "volume": decimal_str(sale.volume),
        "amount": decimal_str(sale.amount),
        "totalizer_volume_start": decimal_str(start),
        "totalizer_volume_end": decimal_str(sale.totalizer_volume_end),
        "totalizer_amount_start": decimal_str(amount_start),
        "totalizer_amount_end": decimal_str(sale.totalizer_amount_end),
        "started_at": None if started_at is None else iso(started_at.astimezone(tz)),
        "ended_at": iso(sale.ended_at.replace(tzinfo=tz)),
        "flags": list(flags or []),
    }


Record = tuple[str, dict[str, Any]]  # (rid, body)


def stamp(at: datetime, tz: timezone) -> str:
    """A naive wall-clock time at ``tz`` as the platform's ISO string."""
    return iso(at.replace(tzinfo=tz))


def millis(at: datetime, tz: timezone) -> int:
    return int(at.replace(tzinfo=tz).timestamp() * 1000)


def alarm_record(
    source: str, code: str, raised: bool, at: datetime, tz: timezone, detail: dict[str, Any]
) -> Record:
    """An ``alarm`` body (raised or cleared) and its rid, stable for one transition."""
    state = "raised" if raised else "cleared"
    body = {
        "code": code,
        "state": state,
        "source": source,
        "at": stamp(at, tz),
        "detail": detail,
    }
    return f"{source}:{code}:{state}:{millis(at, tz)}", body
