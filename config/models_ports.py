"""``[[ports]]``: one dispenser line each, and its protocol driver's options.

Part of the config schema (config/models.py re-exports every name here).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, field_serializer, field_validator, model_validator

import protocols
from config.models_base import _MODEL_CONFIG, _fail, _invalid, _LocatedError, _reject_non_int

#: Sinopec link protocol: the PC/POS side uses addresses 0xE0..0xF9
#: (docs: /work/shared/protocols.md §2).
SINOPEC_MASTER_MIN, SINOPEC_MASTER_MAX = 0xE0, 0xF9
#: Consecutive timeouts before a pump is declared offline (SPEC D2, D14).
OFFLINE_AFTER_MIN, OFFLINE_AFTER_MAX = 1, 100

#: SPEC D15: 32 dispenser interfaces per gateway.
MAX_PORTS = 32
#: Pump logical numbers as dispensers accept them on the bus (two BCD digits).
PUMP_ADDRESS_MIN, PUMP_ADDRESS_MAX = 1, 99
#: Standard serial rates plus 5760 and 5787, used by Chinese current-loop and
#: Gilbarco lines (protocols.md §2 line settings).
BAUDRATES = (1200, 2400, 4800, 5760, 5787, 9600, 19200, 38400, 57600, 115200)
#: Poll period and response timeout: below 20 ms a 9600-baud frame cannot even
#: be sent; above 10 s an order's end is no longer "real time" (SPEC D2).
TIMING_MIN_MS, TIMING_MAX_MS = 20, 10_000

#: Upper bound of a "read every N polls" option: 100 000 polls is hours even
#: at a fast poll, so anything larger is a typo.
READ_EVERY_MAX = 100_000


class SinopecOptions(BaseModel):
    """Keyword arguments of the Sinopec driver (protocols.md §2)."""

    model_config = _MODEL_CONFIG

    master_address: Annotated[int, Field(ge=SINOPEC_MASTER_MIN, le=SINOPEC_MASTER_MAX)] = 0xE0
    #: Polarity of ctrl bit 6 (the calling side): public sources disagree.
    caller_bit_set: bool = True
    offline_after: Annotated[int, Field(ge=OFFLINE_AFTER_MIN, le=OFFLINE_AFTER_MAX)] = 3
    #: Polls of a pump between two reads of its error list (3B), totals (38)
    #: and identities (3A): the driver's defaults, ≈ 2 s, 10 s, 2 min at 100 ms.
    errors_every: Annotated[int, Field(ge=1, le=READ_EVERY_MAX)] = 20
    totals_every: Annotated[int, Field(ge=1, le=READ_EVERY_MAX)] = 100
    info_every: Annotated[int, Field(ge=1, le=READ_EVERY_MAX)] = 1200


#: Decimal places a BCD / digit field carries (volume, amount, price). Pumps
#: are configured for 2 or 3; 0..4 covers every model we know of.
DECIMALS_MIN, DECIMALS_MAX = 0, 4

Decimals = Annotated[int, Field(ge=DECIMALS_MIN, le=DECIMALS_MAX)]


class DartOptions(BaseModel):
    """Keyword arguments of the Wayne DART driver (protocols.md §3)."""

    model_config = _MODEL_CONFIG

    offline_after: Annotated[int, Field(ge=OFFLINE_AFTER_MIN, le=OFFLINE_AFTER_MAX)] = 3
    volume_decimals: Decimals = 2
    amount_decimals: Decimals = 2
    price_decimals: Decimals = 2
    #: DART carries no grade code: nozzle number ("1".."15") → grade code as
    #: the platform knows it (e.g. "1092"). A nozzle not listed reports "".
    grades: dict[Annotated[str, Field(pattern=r"^([1-9]|1[0-5])$")], str] = Field(
        default_factory=dict
    )

    @field_serializer("grades")
    def _grades_by_number(self, grades: dict[str, str]) -> dict[int, str]:
        # The driver takes nozzle numbers; TOML keys are always text.
        return {int(nozzle): grade for nozzle, grade in grades.items()}


class GilbarcoOptions(BaseModel):
    """Keyword arguments of the Gilbarco two-wire driver and monitor (protocols.md §4;
    docs/protocols/gilbarco.md: why each is a setting)."""

    model_config = _MODEL_CONFIG

    offline_after: Annotated[int, Field(ge=OFFLINE_AFTER_MIN, le=OFFLINE_AFTER_MAX)] = 3
    volume_decimals: Decimals = 2
    money_decimals: Decimals = 2
    price_decimals: Decimals = 2
    #: The totals reply's decimal places: FCC builds show them differ from the
    #: transaction's by model (fangym0335/first src/lischn022.c:1401-1441).
    volume_total_decimals: Decimals = 2
    money_total_decimals: Decimals = 2


#: Line self-check thresholds, seconds (SPEC F1; collector/linecheck.py has
#: the defaults and why): below 1 s a poll port's idle pace (1 s) would look
#: silent; a window under 2 s holds too few frames to judge a protocol; an
#: hour is the longest anything here may wait.
LINE_CHECK_MIN_S, LINE_REWIRED_MIN_S, LINE_CHECK_MAX_S = 1.0, 2.0, 3600.0

#: RTS delays and inter-frame gaps, ms: beyond 100 ms a 9600-baud frame's
#: answer window is gone.
RS485_DELAY_MAX_MS = 100


class PortConfig(BaseModel):
    model_config = _MODEL_CONFIG

    #: The nozzle key is ``p{number:02d}.a{address}.n{nozzle}``.
    number: Annotated[int, Field(ge=1, le=MAX_PORTS)]
    device: Annotated[str, Field(min_length=1)]
    protocol: str
    #: ``poll``: the collector is master (read-only queries); ``relay``: in
    #: line between the dispenser (``device``) and the POS (``pos_device``);
    #: ``listen``: a receive-only tap on a bus (SPEC D19, D20; docs/relay.md).
    mode: Literal["poll", "relay", "listen"] = "poll"
    pos_device: Annotated[str, Field(min_length=1)] | None = None
    baudrate: int = 9600
    bytesize: Literal[7, 8] = 8
    parity: Literal["N", "E", "O"] = "E"
    stopbits: Literal[1, 2] = 1
    addresses: Annotated[
        list[Annotated[int, Field(ge=PUMP_ADDRESS_MIN, le=PUMP_ADDRESS_MAX)]],
        Field(min_length=1),
    ]
    poll_interval_ms: Annotated[int, Field(ge=TIMING_MIN_MS, le=TIMING_MAX_MS)] = 200
    #: Poll interval while every nozzle of the port is idle and no sale is
    #: being confirmed: a lift is still seen within this, and an idle
    #: 32-port box costs a fraction of the CPU (bench/ports32.py). Never
    #: shorter than ``poll_interval_ms`` (the larger of the two applies).
    idle_poll_interval_ms: Annotated[int, Field(ge=TIMING_MIN_MS, le=TIMING_MAX_MS)] = 1000
    #: Quiet time before the next step of an exchange; None: the protocol's
    #: own (collector/port.py ``INTER_FRAME_GAP_MS``).
    inter_frame_gap_ms: Annotated[int, Field(ge=0, le=RS485_DELAY_MAX_MS)] | None = None
    #: Kernel RS-485 direction control for adapters whose transceiver needs
    #: RTS to switch (TIOCSRS485); off: the adapter switches by itself.
    rs485: bool = False
    rs485_rts_on_send: bool = True
    rs485_delay_before_ms: Annotated[int, Field(ge=0, le=RS485_DELAY_MAX_MS)] = 0
    rs485_delay_after_ms: Annotated[int, Field(ge=0, le=RS485_DELAY_MAX_MS)] = 0
    response_timeout_ms: Annotated[int, Field(ge=TIMING_MIN_MS, le=TIMING_MAX_MS)] = 300
    #: LINE_SILENT after this long without a byte from the dispenser side on a
    #: line that had traffic (SPEC F1; collector/linecheck.py).
    line_silent_after_s: Annotated[float, Field(ge=LINE_CHECK_MIN_S, le=LINE_CHECK_MAX_S)] = 10.0
    #: Window of the LINE_REWIRED checks: another protocol's bytes, or only
    #: unconfigured pumps' frames, for this long (SPEC F1).
    line_rewired_after_s: Annotated[float, Field(ge=LINE_REWIRED_MIN_S, le=LINE_CHECK_MAX_S)] = 30.0
    sinopec: SinopecOptions = Field(default_factory=SinopecOptions)
    dart: DartOptions = Field(default_factory=DartOptions)
    gilbarco: GilbarcoOptions = Field(default_factory=GilbarcoOptions)

    @field_validator("protocol")
    @classmethod
    def _check_protocol(cls, value: str) -> str:
        known = protocols.available()
        if value not in known:
            raise _invalid(f"unknown protocol {value!r}; known: {', '.join(known)}")
        return value

    @model_validator(mode="after")
    def _check_mode(self) -> PortConfig:
        if self.mode == "relay" and self.pos_device is None:
            raise _fail([(("pos_device",), "relay mode needs the POS side's device", None)])
        if self.mode != "relay" and self.pos_device is not None:
            reason = f"only a relay has a POS side (mode is {self.mode!r})"
            raise _fail([(("pos_device",), reason, self.pos_device)])
        if self.mode != "poll" and self.protocol not in protocols.monitorable():
            reason = (
                f"protocol {self.protocol!r} can only be polled; relay and listen "
                f"need a passive monitor ({', '.join(protocols.monitorable())})"
            )
            raise _fail([(("mode",), reason, self.mode)])
        if self.mode == "listen" and self.protocol not in protocols.bus_monitors():
            reason = f"a {self.protocol} bus cannot be told apart by direction; use relay"
            raise _fail([(("mode",), reason, self.mode)])
        return self

    @field_validator("baudrate")
    @classmethod
    def _check_baudrate(cls, value: int) -> int:
        if value not in BAUDRATES:
            rates = ", ".join(str(rate) for rate in BAUDRATES)
            raise _invalid(f"must be one of {rates}; got {value}")
        return value

    @field_validator("bytesize", "stopbits", mode="before")
    @classmethod
    def _check_int_literal(cls, value: Any) -> Any:
        return _reject_non_int(value)

    @field_validator("addresses")
    @classmethod
    def _check_addresses(cls, value: list[int]) -> list[int]:
        seen: set[int] = set()
        duplicates: list[_LocatedError] = []
        for index, address in enumerate(value):
            if address in seen:
                duplicates.append(((index,), f"duplicate address {address}", address))
            seen.add(address)
        if duplicates:
            raise _fail(duplicates)
        return value
