"""``[ports.uninfo]``: the Changkong Uninfo driver's keyword options (docs/protocols/uninfo.md)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Literal

from annotated_types import Interval

from protocols.options import DecimalOptions, ReadEvery

#: A nozzle number as a TOML key (TOML keys are always text): 1..4, the
#: FCC's nozzles per fuelling point (``MAX_FP_LN_CNT``, ``src/ifsf_dsp.h:35``).
NozzleNumber = Literal["1", "2", "3", "4"]

#: Identical reads of the totals and of the record before they count: 1
#: trusts one read (its check word is 4 bits); above 5 each read costs up to
#: 190 ms of line for no gain.
Reads = Annotated[int, Interval(ge=1, le=5)]


@dataclass(frozen=True, slots=True)
class UninfoOptions(DecimalOptions):
    """Keyword arguments of :class:`protocols.uninfo.driver.UninfoPoller`."""

    #: The loop echoes every request before the pump's reply (a Gilbarco
    #: loop does, protocols.md §4; for Uninfo unverified, and the FCC's own
    #: reads take the first byte as the reply, lischn011.c:1652). Default off.
    echo: bool = False
    #: Read the running display (8) while a pump fuels: the live volume and
    #: amount. Default on.
    live_display: bool = True
    reads: Reads = 2
    #: Turns of a pump between two totals reads when no fill asks for one.
    totals_every: ReadEvery = 50
    #: Uninfo carries no grade code: nozzle number ("1".."4") → grade code as
    #: the platform knows it (e.g. "1092"). A nozzle not listed reports "".
    grades: dict[NozzleNumber, str] = field(default_factory=dict)
