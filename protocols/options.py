"""Option types the protocol packages share, for their ``options`` dataclasses.

A protocol's options (``ProtocolDescriptor.options``) are a frozen stdlib
dataclass whose fields are the driver's keyword options; bounds are
``typing.Annotated`` metadata from ``annotated_types``, which pydantic
honours when ``config`` validates the port's ``[ports.<name>]`` table. Only
the validating step imports these modules: the daemon receives the
validated values (config/handoff.py), never this module or annotated_types.

The options every family shares are declared once, as bases a family's
options class extends with its own: :class:`PumpOptions` (when a pump is
offline) and :class:`DecimalOptions` (the implied decimals of the volume,
amount and price fields).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from annotated_types import Interval

#: Consecutive unanswered requests before a pump is declared offline (SPEC
#: D2, D14): one miss may be noise; beyond 100 a dead pump goes unreported
#: for minutes.
OFFLINE_AFTER_MIN, OFFLINE_AFTER_MAX = 1, 100
OfflineAfter = Annotated[int, Interval(ge=OFFLINE_AFTER_MIN, le=OFFLINE_AFTER_MAX)]

#: Decimal places a BCD / digit field carries (volume, amount, price). Pumps
#: are configured for 2 or 3; 0..4 covers every model we know of.
DECIMALS_MIN, DECIMALS_MAX = 0, 4
Decimals = Annotated[int, Interval(ge=DECIMALS_MIN, le=DECIMALS_MAX)]

#: Upper bound of a "read every N polls" option: 100 000 polls is hours even
#: at a fast poll, so anything larger is a typo.
READ_EVERY_MAX = 100_000
ReadEvery = Annotated[int, Interval(ge=1, le=READ_EVERY_MAX)]


@dataclass(frozen=True, slots=True)
class PumpOptions:
    """The option every family's driver and monitor takes."""

    #: Requests in a row without a byte back before a pump is offline: three,
    #: as the FCC counts them (``fangym0335/first src/pub.h:99``).
    offline_after: OfflineAfter = 3


@dataclass(frozen=True, slots=True)
class DecimalOptions(PumpOptions):
    """Plus the decimal places of the volume, amount and price fields, where
    the wire does not carry them: two, the common field setting (a family
    says which fields each covers, and where its two comes from)."""

    volume_decimals: Decimals = 2
    amount_decimals: Decimals = 2
    price_decimals: Decimals = 2
