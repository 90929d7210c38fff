"""``[[ports]]``: one dispenser line each, and its protocol driver's options.

Part of the config schema (config/models.py re-exports every name here).
Nothing here names a protocol: the port's ``[ports.<protocol>]`` table, its
default line settings, which modes it allows and its pump addresses all come
from the protocol's descriptor (protocols/descriptor.py), so a new protocol
package adds no line to ``config/``.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    Field,
    SerializerFunctionWrapHandler,
    ValidationError,
    ValidatorFunctionWrapHandler,
    field_validator,
    model_serializer,
    model_validator,
)

import protocols
from config.models_base import (
    _MODEL_CONFIG,
    PathText,
    Whole,
    _fail,
    _invalid,
    _LocatedError,
    _repeats,
)
from config.protocol_options import validate_options
from protocols.descriptor import ProtocolDescriptor

# The tank gauge's offline_after has the same bounds (config/models_tanks.py).
from protocols.options import OFFLINE_AFTER_MAX as OFFLINE_AFTER_MAX
from protocols.options import OFFLINE_AFTER_MIN as OFFLINE_AFTER_MIN

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


def _checked_baudrate(value: int) -> int:
    if value not in BAUDRATES:
        rates = ", ".join(str(rate) for rate in BAUDRATES)
        raise _invalid(f"must be one of {rates}; got {value}")
    return value


#: A serial line's settings (a port's, the gauge's): the rate, one of
#: :data:`BAUDRATES`; data bits, parity and stop bits.
Baudrate = Annotated[int, AfterValidator(_checked_baudrate)]
ByteSize = Whole[Literal[7, 8]]
Parity = Literal["N", "E", "O"]
StopBits = Whole[Literal[1, 2]]

#: Line self-check thresholds, seconds (SPEC F1; collector/station/linecheck.py has
#: the defaults and why): below 1 s a poll port's idle pace (1 s) would look
#: silent; a window under 2 s holds too few frames to judge a protocol; an
#: hour is the longest anything here may wait.
LINE_CHECK_MIN_S, LINE_REWIRED_MIN_S, LINE_CHECK_MAX_S = 1.0, 2.0, 3600.0

#: RTS delays and inter-frame gaps, ms: beyond 100 ms a 9600-baud frame's
#: answer window is gone.
RS485_DELAY_MAX_MS = 100


#: Nozzle numbers a wire format carries: UDC names up to 32 (lischn019).
NOZZLES_PER_PUMP_MAX = 32


class PortConfig(BaseModel):
    model_config = _MODEL_CONFIG

    #: The nozzle key is ``p{number:02d}.a{address}.n{nozzle}``.
    number: Annotated[int, Field(ge=1, le=MAX_PORTS)]
    device: PathText
    protocol: str
    #: ``poll``: the collector is master (read-only queries); ``relay``: in
    #: line between the dispenser (``device``) and the POS (``pos_device``);
    #: ``listen``: a receive-only tap on a bus (SPEC D19, D20; docs/relay.md).
    mode: Literal["poll", "relay", "listen"] = "poll"
    pos_device: PathText | None = None
    #: Line settings; each one the TOML omits is the protocol's most common
    #: (its descriptor's first ``line_settings``), these only without any.
    baudrate: Baudrate = 9600
    bytesize: ByteSize = 8
    parity: Parity = "E"
    stopbits: StopBits = 1
    addresses: Annotated[
        list[Annotated[int, Field(ge=PUMP_ADDRESS_MIN, le=PUMP_ADDRESS_MAX)]],
        Field(min_length=1),
    ]
    #: Nozzles of each pump, numbered 1..this. A report of another number
    #: creates no nozzle: NOZZLE_UNKNOWN on the pump, a sale stored on the
    #: pump's own chain (collector/station/sink.py, docs/alarms.md). 16: more than any
    #: dispenser's side carries; set the real count.
    nozzles: Annotated[int, Field(ge=1, le=NOZZLES_PER_PUMP_MAX)] = 16
    poll_interval_ms: Annotated[int, Field(ge=TIMING_MIN_MS, le=TIMING_MAX_MS)] = 200
    #: Poll interval while every nozzle of the port is idle and no sale is
    #: being confirmed: a lift is still seen within this, and an idle
    #: 32-port box costs a fraction of the CPU (bench/ports32.py). Never
    #: shorter than ``poll_interval_ms`` (the larger of the two applies).
    idle_poll_interval_ms: Annotated[int, Field(ge=TIMING_MIN_MS, le=TIMING_MAX_MS)] = 1000
    #: Quiet time before the next step of an exchange; None: the protocol's
    #: own (its descriptor's ``inter_frame_gap_ms``).
    inter_frame_gap_ms: Annotated[int, Field(ge=0, le=RS485_DELAY_MAX_MS)] | None = None
    #: Kernel RS-485 direction control for adapters whose transceiver needs
    #: RTS to switch (TIOCSRS485); off: the adapter switches by itself.
    rs485: bool = False
    rs485_rts_on_send: bool = True
    rs485_delay_before_ms: Annotated[int, Field(ge=0, le=RS485_DELAY_MAX_MS)] = 0
    rs485_delay_after_ms: Annotated[int, Field(ge=0, le=RS485_DELAY_MAX_MS)] = 0
    response_timeout_ms: Annotated[int, Field(ge=TIMING_MIN_MS, le=TIMING_MAX_MS)] = 300
    #: LINE_SILENT after this long without a byte from the dispenser side on a
    #: line that had traffic (SPEC F1; collector/station/linecheck.py).
    line_silent_after_s: Annotated[float, Field(ge=LINE_CHECK_MIN_S, le=LINE_CHECK_MAX_S)] = 10.0
    #: Window of the LINE_REWIRED checks: another protocol's bytes, or only
    #: unconfigured pumps' frames, for this long (SPEC F1).
    line_rewired_after_s: Annotated[float, Field(ge=LINE_REWIRED_MIN_S, le=LINE_CHECK_MAX_S)] = 30.0
    #: The protocol's driver options: the ``[ports.<protocol>]`` table as an
    #: instance of the descriptor's ``options`` dataclass (its defaults when
    #: the table is absent); None for a protocol that takes none. Dumped
    #: under the protocol's name, as the TOML has it.
    options: Any = None

    @model_validator(mode="wrap")
    @classmethod
    def _protocol_tables(cls, data: Any, handler: ValidatorFunctionWrapHandler) -> PortConfig:
        """The ``[ports.<protocol>]`` table and the line defaults, from the descriptor."""
        if not isinstance(data, dict):
            port: PortConfig = handler(data)
            return port
        data = dict(data)
        located: list[_LocatedError] = []
        nested: list[tuple[tuple[str | int, ...], ValidationError]] = []
        if "options" in data:  # set only through the protocol's own table
            located.append((("options",), "unknown key", data.pop("options")))
        protocol = data.get("protocol")
        found = _descriptor(protocol)
        known = set(protocols.available())
        tables = {k: data.pop(k) for k in list(data) if k in known and k not in cls.model_fields}
        for key, table in tables.items():
            if found is None:
                # The port's protocol is wrong (its own error says so): still
                # check the table against the protocol it names.
                _options(protocols.descriptor(key), table, located, nested)
            elif key != found.name:
                reason = f"options of protocol {key!r}, but this port's protocol is {found.name!r}"
                located.append(((key,), reason, table))
        if found is not None:
            line = found.default_line
            if line is not None:
                for name in ("baudrate", "bytesize", "parity", "stopbits"):
                    data.setdefault(name, getattr(line, name))
            options = _options(found, tables.get(found.name), located, nested)
            if options is not None:
                data["options"] = options
        try:
            port = handler(data)
        except ValidationError as exc:
            raise _fail(located, exc, nested) from None
        if located or nested:
            raise _fail(located, None, nested)
        return port

    @model_serializer(mode="wrap")
    def _options_under_protocol(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        dumped: dict[str, Any] = handler(self)
        dumped.pop("options", None)
        if self.options is not None:
            dumped[self.protocol] = dataclasses.asdict(self.options)
        return dumped

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
        found = protocols.descriptor(self.protocol)
        if self.mode == "poll" and found.driver is None:
            reason = f"protocol {self.protocol!r} cannot be polled: {found.poll_refused}"
            raise _fail([(("mode",), reason, self.mode)])
        low, high = found.address_range
        outside = [
            ((i,), f"protocol {self.protocol!r} addresses are {low}..{high}, got {a}", a)
            for i, a in enumerate(self.addresses)
            if not low <= a <= high
        ]
        if outside:
            raise _fail([(("addresses", *loc), reason, a) for loc, reason, a in outside])
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

    @field_validator("addresses")
    @classmethod
    def _check_addresses(cls, value: list[int]) -> list[int]:
        duplicates = [((i,), f"duplicate address {a}", a) for i, a in _repeats(value)]
        if duplicates:
            raise _fail(duplicates)
        return value


def _options(
    found: ProtocolDescriptor,
    table: Any,
    located: list[_LocatedError],
    nested: list[tuple[tuple[str | int, ...], ValidationError]],
) -> Any:
    """The protocol's options from its table (None: absent), or None with the
    errors added to ``located`` / ``nested``."""
    if found.options is None:
        if table is not None:
            located.append(((found.name,), f"protocol {found.name!r} takes no options", table))
        return None
    try:
        return validate_options(found.load("options"), {} if table is None else table)
    except ValidationError as exc:
        nested.append(((found.name,), exc))
    except (ValueError, TypeError) as exc:  # the dataclass's own cross-field checks
        located.append(((found.name,), str(exc), table))
    return None


def _descriptor(protocol: Any) -> ProtocolDescriptor | None:
    """The descriptor of a known protocol name, else None (``protocol`` says why)."""
    if not isinstance(protocol, str):
        return None
    try:
        return protocols.descriptor(protocol)
    except protocols.UnknownProtocol:
        return None
