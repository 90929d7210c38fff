"""``[edge]`` and ``[books]``: the checks every sale goes through.

Part of the config schema (config/models.py re-exports every name here).
``[edge]``: the plausibility rules on every order (collector/station/edge.py);
``[books]``: the link against the POS's books on relay and listen ports
(collector/station/reconcile.py). Codes and thresholds: docs/alarms.md.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, Field, field_validator, model_validator

import protocols
from config.models_base import _MODEL_CONFIG, STATION_MAX_CHARS, _fail, _invalid

#: A unit price in yuan/L: fuel sells for about 5–10; 1 000 is a typo at any
#: decimal place a pump uses.
PRICE_MAX_YUAN_PER_L = 1000.0
#: Grades a station sells: a handful; 64 is every code a province uses.
EDGE_GRADES_MAX = 64
#: An amount mismatch wider than 100 yuan is no rounding: it is the finding.
AMOUNT_TOLERANCE_MAX_YUAN = 100.0
#: Flow: JJG 443-2023 covers dispensers up to 200 L/min; 10 000 leaves room
#: for any bulk meter a station might run, and above it the rule checks nothing.
MAX_FLOW_MAX_L_PER_MIN = 10_000.0
#: Longest fill allowed when the lift was not seen: a minute to a day.
LONGEST_FILL_MIN_S, LONGEST_FILL_MAX_S = 60, 86_400
#: Pump clock skew: 1 s (a pump synchronised with the gateway) to a day.
PUMP_CLOCK_SKEW_MAX_S = 86_400
#: A held sale's age: an hour to a year.
HELD_SALE_MIN_S, HELD_SALE_MAX_S = 3600, 366 * 86_400

_Grade = Annotated[str, Field(min_length=1, max_length=STATION_MAX_CHARS)]
_Prices = Annotated[
    dict[_Grade, Annotated[float, Field(gt=0, le=PRICE_MAX_YUAN_PER_L)]],
    Field(max_length=EDGE_GRADES_MAX),
]


class EdgeConfig(BaseModel):
    """Edge checks on every order (SPEC A1, A2, A7, A10, and the plausibility
    rules; collector/station/edge.py, docs/alarms.md). The plausibility defaults pass
    any real station; each is a default to configure for the station's own."""

    model_config = _MODEL_CONFIG

    #: grade code → lowest plausible unit price, yuan/L (A10: dumping).
    price_floors: _Prices = Field(default_factory=dict)
    #: |price × volume − amount| above this many yuan is AMOUNT_MISMATCH (A2).
    amount_tolerance: Annotated[float, Field(ge=0, le=AMOUNT_TOLERANCE_MAX_YUAN)] = 0.01
    #: grade code → highest plausible unit price (PRICE_ABOVE_CEILING); a
    #: grade without one: ``price_max``.
    price_ceilings: _Prices = Field(default_factory=dict)
    price_max: Annotated[float, Field(gt=0, le=PRICE_MAX_YUAN_PER_L)] = 100.0
    #: The most a nozzle delivers, L/min (VOLUME_BEYOND_FLOW). 200: the top of
    #: JJG 443-2023's scope; a car nozzle delivers 40–60.
    max_flow_l_per_min: Annotated[float, Field(gt=0, le=MAX_FLOW_MAX_L_PER_MIN)] = 200.0
    #: A fill whose lift was not seen is allowed this long at that flow.
    longest_fill_s: Annotated[int, Field(ge=LONGEST_FILL_MIN_S, le=LONGEST_FILL_MAX_S)] = 3600
    #: PUMP_CLOCK_SKEW beyond this many seconds between the pump's sale time
    #: and the gateway's clock.
    pump_clock_skew_s: Annotated[int, Field(ge=1, le=PUMP_CLOCK_SKEW_MAX_S)] = 300
    #: A sale older than this when received: PUMP_CLOCK_SKEW (a wrong date).
    held_sale_max_age_s: Annotated[int, Field(ge=HELD_SALE_MIN_S, le=HELD_SALE_MAX_S)] = 30 * 86_400
    #: The grade codes the station sells, as its dispensers report them
    #: (GRADE_UNKNOWN for another); empty: not checked.
    grades: Annotated[list[_Grade], Field(max_length=EDGE_GRADES_MAX)] = Field(default_factory=list)
    #: Protocols whose dispensers record a lift without fuel as a 0 L, 0 yuan
    #: sale; from any other such a sale is ZERO_SALE.
    zero_sale_protocols: Annotated[list[str], Field(max_length=EDGE_GRADES_MAX)] = Field(
        default_factory=list
    )

    @field_validator("zero_sale_protocols")
    @classmethod
    def _check_protocols(cls, value: list[str]) -> list[str]:
        known = protocols.available()
        for name in value:
            if name not in known:
                raise _invalid(f"unknown protocol {name!r}; known: {', '.join(known)}")
        return value

    @model_validator(mode="after")
    def _check_band(self) -> EdgeConfig:
        bad = [
            ((("price_floors", grade)), f"above the grade's ceiling {ceiling}", floor)
            for grade, floor in self.price_floors.items()
            if floor > (ceiling := self.price_ceilings.get(grade, self.price_max))
        ]
        if bad:
            raise _fail(bad)
        return self


#: A week: a POS that has not confirmed a sale in a week never will; longer
#: would only hold more sales open in memory (collector/station/reconcile.py bounds them).
BOOKS_TIMEOUT_MAX_S = 604_800.0
#: Under a second is below the reconciliation's tick (collector/station/books.py).
BOOKS_TIMEOUT_MIN_S = 1.0


class BooksConfig(BaseModel):
    """The link against the books on relay and listen ports (collector/station/reconcile.py;
    the rules in docs/alarms.md)."""

    model_config = _MODEL_CONFIG

    #: Reconcile at all (ports whose protocol carries the POS's confirmation).
    enabled: bool = True
    #: A reported sale not confirmed by the POS this long after → SALE_UNCONFIRMED.
    confirm_within_s: Annotated[float, Field(ge=BOOKS_TIMEOUT_MIN_S, le=BOOKS_TIMEOUT_MAX_S)] = (
        120.0
    )
    #: Per-nozzle count windows from local midnight (must divide a day) → ORDER_COUNT_IMBALANCE.
    count_window_s: Annotated[int, Field(ge=60, le=86_400)] = 86_400
    #: No POS frame this long while the dispenser reports a sale → LINK_BYPASSED.
    pos_silent_after_s: Annotated[float, Field(ge=BOOKS_TIMEOUT_MIN_S, le=BOOKS_TIMEOUT_MAX_S)] = (
        60.0
    )
    #: After a port starts, a confirmation of an unknown number is not a
    #: CONFIRM_MISMATCH this long (its record may have passed before the start).
    start_grace_s: Annotated[float, Field(ge=0, le=BOOKS_TIMEOUT_MAX_S)] = 300.0

    @model_validator(mode="after")
    def _check_window(self) -> BooksConfig:
        if 86_400 % self.count_window_s:
            got = str(self.count_window_s)
            raise _fail([(("count_window_s",), "must divide a day (86400 s)", got)])
        return self
