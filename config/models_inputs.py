"""``[[seals]]`` and ``[[pulses]]``: digital inputs beside the dispensers.

A seal is one input (a smart lead seal's loop, read from sysfs); a pulse
input is a nozzle's encoder pulses and lift / hang contact on GPIO lines.
Part of the config schema (config/models.py re-exports every name here; the
cross-table checks that each seal and nozzle belongs to a polled pump are
there). What the collector does with them: collector/station/seals.py,
collector/station/pulse_check.py (the rules), collector/station/gpio_inputs.py
(the lines), docs/alarms.md (codes, thresholds).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, model_validator

from config.models_base import _MODEL_CONFIG, FilePath, PathText, Whole, _fail, _matching
from config.models_tanks import NOZZLE_KEY_PATTERN

#: A pump as an alarm source names it: ``p01.a1`` (port 1, bus address 1).
DISPENSER_KEY_PATTERN = re.compile(r"^p(\d{2})\.a(\d{1,2})$")
#: Seal names appear in alarm details and status: short, no spaces.
SEAL_NAME_PATTERN = re.compile(r"^[A-Za-z0-9_.-]{1,32}$")
#: Seal read period, ms: 100 ms finds a cut within half a second (3 reads);
#: a minute is the slowest a tamper alarm may lag.
SEAL_PERIOD_MIN_MS, SEAL_PERIOD_MAX_MS = 100, 60_000
#: 32 dispensers x 4 seals (meter, encoder, main board, cabinet).
MAX_SEALS = 128


class SealConfig(BaseModel):
    """One smart lead seal (SPEC F3; collector/station/seals.py): a digital input."""

    model_config = _MODEL_CONFIG

    name: Annotated[str, _matching(SEAL_NAME_PATTERN, "must be 1..32 of A-Z a-z 0-9 _ . -")]
    #: The dispenser it guards, as alarm sources name a pump: ``p01.a1``.
    dispenser: Annotated[
        str, _matching(DISPENSER_KEY_PATTERN, "must be a pump key like p01.a1 (port, address)")
    ]
    #: The input's sysfs value file, e.g. /sys/class/gpio/gpio17/value.
    value: FilePath
    #: What the input reads while the seal's loop is closed (intact).
    intact_level: Whole[Literal[0, 1]] = 1
    poll_ms: Annotated[int, Field(ge=SEAL_PERIOD_MIN_MS, le=SEAL_PERIOD_MAX_MS)] = 500


#: Line offsets on one GPIO chip: the kernel's uAPI numbers them 0..n-1 and
#: no gateway SoC bank or expander has more than a few hundred.
GPIO_LINE_MAX = 1023
#: Litres per encoder pulse: fuel-dispenser encoders give 100 pulses per
#: litre (0.01 L) and finer; 1 pulse per litre is the coarsest that could
#: still meet a 0.6 % tolerance on a 200 L fill, 0.0001 L (10 000 pulses/L)
#: the finest a 32-bit count covers for a nozzle's year.
LITRES_PER_PULSE_MIN, LITRES_PER_PULSE_MAX = 0.0001, 1.0
#: Metrological tolerance in percent: JJG 443's ±0.3 % for a dispenser's
#: maximum permissible error, doubled by default for two instruments
#: compared; 10 % is past any meter in service.
TOLERANCE_PCT_MIN, TOLERANCE_PCT_MAX = 0.05, 10.0
#: Contact debounce in the kernel (uAPI v2 ``debounce_period``), ms.
DEBOUNCE_MAX_MS = 1000
#: Lift / hang vs the sale's start and end: a dispenser's clock is set by
#: hand at many stations; an hour is the most a rule of seconds still means.
TIME_TOLERANCE_MIN_S, TIME_TOLERANCE_MAX_S = 1.0, 3600.0
#: The longest a sale may take to be reported after its hang (a busy bus, a
#: master that polls slowly): past it a lift is a lift without a sale.
SALE_WAIT_MIN_S, SALE_WAIT_MAX_S = 5.0, 3600.0
#: Fuel drawn under which a lift with no sale is not an alarm (a nozzle
#: lifted and hung without fuelling; an encoder's jitter as it is handled).
UNREPORTED_MAX_L = 100.0
#: 32 dispensers × 4 nozzles.
MAX_PULSE_INPUTS = 128


class PulseConfig(BaseModel):
    """One nozzle's pulse counter and (optionally) its lift / hang contact."""

    model_config = _MODEL_CONFIG

    #: The nozzle, as orders name it: ``p01.a1.n2``.
    nozzle: Annotated[str, _matching(NOZZLE_KEY_PATTERN, "must be a nozzle key like p01.a1.n1")]
    #: The GPIO character device both lines are on, e.g. /dev/gpiochip0.
    chip: PathText
    pulse_line: Annotated[int, Field(ge=0, le=GPIO_LINE_MAX)]
    #: The edge that is one pulse.
    pulse_edge: Literal["rising", "falling"] = "rising"
    #: The pulse equivalent. Required: a wrong default would flag every sale.
    litres_per_pulse: Annotated[float, Field(ge=LITRES_PER_PULSE_MIN, le=LITRES_PER_PULSE_MAX)]
    #: The nozzle switch; absent: pulses are judged between consecutive sales.
    nozzle_line: Annotated[int, Field(ge=0, le=GPIO_LINE_MAX)] | None = None
    #: What the contact line reads while the nozzle is out of its holder.
    lifted_level: Whole[Literal[0, 1]] = 1
    debounce_ms: Annotated[int, Field(ge=0, le=DEBOUNCE_MAX_MS)] = 20
    bias: Literal["as-is", "pull-up", "pull-down", "disabled"] = "as-is"
    tolerance_pct: Annotated[float, Field(ge=TOLERANCE_PCT_MIN, le=TOLERANCE_PCT_MAX)] = 0.6
    time_tolerance_s: Annotated[float, Field(ge=TIME_TOLERANCE_MIN_S, le=TIME_TOLERANCE_MAX_S)] = (
        60.0
    )
    sale_wait_s: Annotated[float, Field(ge=SALE_WAIT_MIN_S, le=SALE_WAIT_MAX_S)] = 120.0
    unreported_min_l: Annotated[float, Field(ge=0, le=UNREPORTED_MAX_L)] = 0.05

    @model_validator(mode="after")
    def _check_lines(self) -> PulseConfig:
        if self.nozzle_line is not None and self.nozzle_line == self.pulse_line:
            reason = "the pulse line and the nozzle line must be two lines"
            raise _fail([(("nozzle_line",), reason, self.nozzle_line)])
        return self


def pulse_errors(pulses: list[PulseConfig], pumps: set[tuple[int, int]]) -> list[Any]:
    """Located errors across ``[[pulses]]``: a nozzle of a pump no port polls,
    a nozzle twice, one line of a chip taken twice (the kernel would refuse
    the second request: EBUSY)."""
    errors: list[Any] = []
    nozzles: set[str] = set()
    lines: set[tuple[str, int]] = set()
    for index, p in enumerate(pulses):
        port, address = (int(part[1:]) for part in p.nozzle.split(".")[:2])
        if (port, address) not in pumps:
            reason = f"no port polls pump p{port:02d}.a{address} ([[ports]] number / addresses)"
            errors.append((("pulses", index, "nozzle"), reason, p.nozzle))
        if p.nozzle in nozzles:
            errors.append((("pulses", index, "nozzle"), f"duplicate nozzle {p.nozzle!r}", p.nozzle))
        nozzles.add(p.nozzle)
        for key in ("pulse_line", "nozzle_line"):
            offset = getattr(p, key)
            if offset is None:
                continue
            if (str(p.chip), offset) in lines:
                reason = f"line {offset} of {p.chip} is already an input"
                errors.append((("pulses", index, key), reason, offset))
            lines.add((str(p.chip), offset))
    return errors
