"""What a line of sales in implied-decimal counts is configured with, once.

The DART, Furen and Uninfo pollers (and their monitors' readers) make a
:class:`~protocols.events.Sale` from raw counts the same way: a
:class:`Scale` of implied decimal places, a port's grade table by nozzle
(:func:`nozzle_grades`) and the station's clock; a pump is offline after
``offline_after`` requests in a row without an answer. :class:`SaleLine`
takes these options and checks them; a driver passes its own options
and addresses first and passes the rest on (``**options``), so ``collector/assembly.py`` finds
them all by the constructors' signatures.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypedDict

from protocols.base import at_least_one
from protocols.bcd import scaled
from protocols.events import Sale

#: A port's ``grades`` table: nozzle → grade; a TOML table's keys are text.
Grades = Mapping[int, str] | Mapping[str, str] | None


@dataclass(frozen=True, slots=True)
class Scale:
    """Implied decimal places of volume, amount and price (totals: volume's
    and amount's), a site setting (docs/brands.md)."""

    volume: int = 2
    amount: int = 2
    price: int = 2

    def __post_init__(self) -> None:
        for decimals in (self.volume, self.amount, self.price):
            if not 0 <= decimals <= 9:
                raise ValueError("decimal places must be 0..9")


def nozzle_grades(grades: Grades) -> dict[int, str]:
    """The grade table by nozzle number (a config table's keys are text)."""
    return {int(nozzle): grade for nozzle, grade in (grades or {}).items()}


class SaleOptions(TypedDict, total=False):
    """The keyword options of :class:`SaleLine`, as a driver passes them on."""

    offline_after: int
    volume_decimals: int
    amount_decimals: int
    price_decimals: int
    grades: Grades
    clock: Callable[[], datetime]


class SaleLine:
    """The options every driver of a line of sales takes, checked once:
    ``_offline_after``, ``_scale``, ``_grades`` (by nozzle) and ``_clock``."""

    def __init__(
        self,
        *,
        offline_after: int = 3,
        volume_decimals: int = 2,
        amount_decimals: int = 2,
        price_decimals: int = 2,
        grades: Grades = None,
        clock: Callable[[], datetime] = datetime.now,
    ) -> None:
        at_least_one(offline_after=offline_after)
        self._offline_after = offline_after
        self._scale = Scale(volume_decimals, amount_decimals, price_decimals)
        self._grades = nozzle_grades(grades)
        self._clock = clock


@dataclass
class SaleMaker:
    """One pump's sales from records that carry no time and no number (Furen,
    Uninfo): keyed by the nozzle's volume total after the fill, which is the
    ``order_no``; ``ended_at`` is when a key was first seen (the last
    ``remembered`` keys), the same on every later reading of the record."""

    address: int
    scale: Scale
    grades: Mapping[int, str]
    clock: Callable[[], datetime]
    remembered: int
    _ended_at: dict[str, datetime] = field(default_factory=dict)

    def sale(
        self,
        nozzle: int,
        counts: tuple[int, int, int],
        totals: tuple[int, int | None],
        key: str,
        raw: bytes,
    ) -> Sale:
        """The sale of the raw (price, volume, amount) ``counts`` on
        ``nozzle`` with the (volume, amount) ``totals`` after it (amount
        None: not reported)."""
        ended_at = self._ended_at.get(key)
        if ended_at is None:
            ended_at = self._ended_at[key] = self.clock()
            while len(self._ended_at) > self.remembered:
                del self._ended_at[next(iter(self._ended_at))]
        scale = self.scale
        price, volume, amount = counts
        volume_total, amount_total = totals
        amount_end = None if amount_total is None else scaled(amount_total, scale.amount)
        return Sale(
            address=self.address,
            nozzle=nozzle,
            order_no=str(volume_total),
            ended_at=ended_at,
            grade=self.grades.get(nozzle, ""),
            price=scaled(price, scale.price),
            volume=scaled(volume, scale.volume),
            amount=scaled(amount, scale.amount),
            totalizer_volume_end=scaled(volume_total, scale.volume),
            totalizer_amount_end=amount_end,
            key=key,
            raw=raw,
        )
