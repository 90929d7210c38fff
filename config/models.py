"""The configuration schema: one pydantic model per TOML table.

Every model forbids unknown keys (a typo must be an error, not a silently
ignored setting) and validates strictly: TOML is typed, so ``port = "1883"``
or ``tls = 1`` is a mistake to report, not to guess at. Cross-field checks
raise errors located at the offending key (``ports.1.number``) so a
technician can find the line to fix.

pydantic costs ~100 ms at import; only ``config.models`` and
``config.loader`` import it, never the poll loop.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidatorFunctionWrapHandler,
    field_serializer,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

import protocols
from config.derived import DeviceDerived, EndpointDerived, UplinkDerived, parse_offset

#: Shared by every model: unknown keys are errors, no type coercion, and no
#: inf/nan (TOML allows them; no duration or count here may be either).
_MODEL_CONFIG = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

#: The device id is the MQTT client id and a topic segment
#: (``forecourt/v1/{id}/…``): MQTT wildcards ``+ #`` and the level separator
#: ``/`` would break the topic tree, and 64 characters stay well inside the
#: 23..65535 client-id range every broker accepts once configured.
DEVICE_ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
#: Station codes are assigned by the regulator; 64 bounds the field in records.
STATION_MAX_CHARS = 64
#: TCP port range.
TCP_PORT_MIN, TCP_PORT_MAX = 1, 65535
#: MQTT keepalive: below 10 s the 4G link pays for pings; above an hour a dead
#: link goes unnoticed for too long (SPEC D7 online state).
KEEPALIVE_MIN_S, KEEPALIVE_MAX_S = 10, 3600
#: Records per uplink message: bounded so one message stays well under
#: typical broker message limits and a lost batch costs little to resend.
BATCH_MAX_RECORDS_LIMIT = 1000
#: SPEC D4 is a floor: a config cannot promise fewer retained orders per nozzle.
STORE_RETAIN_MIN = 2000
#: Below 32 ports x 2 nozzles x 2000 retained orders, the cap could never be met.
STORE_MAX_RECORDS_MIN = 128_000
#: 16 MiB: below it the D4 floor of a small station would not fit either.
STORE_MAX_BYTES_MIN = 16 * 1024 * 1024
#: aiomqtt warns past 10 pending publishes, and every in-flight batch is
#: re-sent after a reconnect, so more in flight only costs duplicates.
MAX_INFLIGHT_LIMIT = 20
#: Heartbeat period (SPEC D7): at least 1 s, at most an hour.
HEARTBEAT_MIN_S, HEARTBEAT_MAX_S = 1, 3600

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


def _invalid(reason: str) -> PydanticCustomError:
    """An error whose message is ``reason`` verbatim (it may contain braces)."""
    return PydanticCustomError("invalid", "{reason}", {"reason": reason})


#: (location below the validated model, reason, bad input)
_LocatedError = tuple[tuple[str | int, ...], str, Any]


def _fail(errors: Sequence[_LocatedError], other: ValidationError | None = None) -> ValidationError:
    """Errors at locations below the validated value, e.g. ``("ports", 1, "number")``.

    pydantic prefixes the location of the value being validated, so the
    reported key is the one to fix, not the list that holds it. ``other``:
    errors found by the ordinary validation, reported first.
    """
    details: list[InitErrorDetails] = []
    for err in other.errors(include_url=False) if other else []:
        if err["type"] == "invalid":
            details.append(
                InitErrorDetails(type=_invalid(err["msg"]), loc=err["loc"], input=err["input"])
            )
        else:
            details.append(
                InitErrorDetails(
                    type=err["type"], loc=err["loc"], input=err["input"], ctx=err.get("ctx", {})
                )
            )
    details += [
        InitErrorDetails(type=_invalid(msg), loc=loc, input=value) for loc, msg, value in errors
    ]
    return ValidationError.from_exception_data("Config", details)


def _reject_non_int(value: Any) -> Any:
    # Literal[1, 2] accepts True and 1.0 even in strict mode (they compare equal).
    if isinstance(value, bool):
        raise _invalid(f"expected an integer, got {str(value).lower()}")
    if not isinstance(value, int):
        raise _invalid(f"expected an integer, got {value!r}")
    return value


class DeviceConfig(DeviceDerived, BaseModel):
    model_config = _MODEL_CONFIG

    id: str
    station: Annotated[str, Field(min_length=1, max_length=STATION_MAX_CHARS)]
    timezone: str = "+08:00"

    @field_validator("id")
    @classmethod
    def _check_id(cls, value: str) -> str:
        if not DEVICE_ID_PATTERN.match(value):
            raise _invalid(
                "must be 1..64 of A-Z a-z 0-9 _ - (it is the MQTT client id and a topic"
                f" segment), got {value!r}"
            )
        return value

    @field_validator("timezone")
    @classmethod
    def _check_timezone(cls, value: str) -> str:
        _parse_offset(value)
        return value


def _parse_offset(text: str) -> dt.timedelta:
    try:
        return parse_offset(text)
    except ValueError as exc:
        raise _invalid(str(exc)) from None


class StoreConfig(BaseModel):
    model_config = _MODEL_CONFIG

    #: The SQLite file (SPEC D4, D6). TOML gives a string: allow str → Path.
    path: Annotated[Path, Field(strict=False)]
    #: Total records kept (every kind), sized for 30 days of a busy station
    #: (SPEC A9; arithmetic in docs/store.md). Above it acknowledged records go
    #: first, oldest first; unsent ones only when they alone exceed it (alarmed).
    max_records: Annotated[int, Field(ge=STORE_MAX_RECORDS_MIN)] = 250_000
    #: Newest orders per nozzle never evicted (SPEC D4: at least 2000).
    retain_per_nozzle: Annotated[int, Field(ge=STORE_RETAIN_MIN)] = 2000
    #: Bytes of SQLite pages in use the records may take (same eviction rules).
    max_bytes: Annotated[int, Field(ge=STORE_MAX_BYTES_MIN)] = 100 * 1024 * 1024


#: Linux network interface names are at most IFNAMSIZ − 1 = 15 bytes.
IFNAME_MAX_CHARS = 15
#: Endpoints a config may list (SPEC D18: wired, 4G, a leased line …): more
#: than a handful is a typo, and each one costs a round of connect attempts.
MAX_ENDPOINTS = 8
#: Connect attempts on one endpoint before the next is tried: 1 moves at the
#: first refusal (a broker restarting is then taken for a dead link), 10 sits
#: on a dead link for minutes of backoff.
ATTEMPTS_PER_ENDPOINT_MAX = 10
#: How often the primary is probed while on a backup: below 5 s the probes
#: cost 4G traffic for nothing; above a day the station stays on 4G for good.
PROBE_PRIMARY_MIN_S, PROBE_PRIMARY_MAX_S = 1, 86_400
#: No endpoint reachable for this long raises NETWORK_LOSS (SPEC F1). At
#: least 1 s (tests); at most a day (a longer outage going unalarmed is no check).
NETWORK_LOSS_MIN_S, NETWORK_LOSS_MAX_S = 1, 86_400


class EndpointConfig(EndpointDerived, BaseModel):
    """One way to the platform's broker (SPEC D10, D18; platform-interface.md
    "Transport"): ``[[uplink.endpoints]]``, the first one the primary."""

    model_config = _MODEL_CONFIG

    #: What the heartbeat's ``link`` and the alarms call it ("wired", "4g").
    name: Annotated[str, Field(min_length=1, max_length=32)] | None = None
    host: Annotated[str, Field(min_length=1)]
    port: Annotated[int, Field(ge=TCP_PORT_MIN, le=TCP_PORT_MAX)] = 1883
    #: Bind the connection to this network interface (SO_BINDTODEVICE), so the
    #: 4G endpoint really goes out over the modem whatever the routing table says.
    interface: Annotated[str, Field(min_length=1, max_length=IFNAME_MAX_CHARS)] | None = None
    #: TLS on this endpoint; unset: ``uplink.tls``.
    tls: bool | None = None

    @field_validator("interface")
    @classmethod
    def _check_interface(cls, value: str | None) -> str | None:
        if value is not None and ("/" in value or value in (".", "..") or value != value.strip()):
            raise _invalid(f"not a network interface name: {value!r}")
        return value


class UplinkConfig(UplinkDerived, BaseModel):
    model_config = _MODEL_CONFIG

    #: The one-endpoint shorthand; ``endpoints`` replaces it (not both).
    host: Annotated[str, Field(min_length=1)] = "127.0.0.1"
    port: Annotated[int, Field(ge=TCP_PORT_MIN, le=TCP_PORT_MAX)] = 1883
    endpoints: Annotated[list[EndpointConfig], Field(max_length=MAX_ENDPOINTS)] = []
    attempts_per_endpoint: Annotated[int, Field(ge=1, le=ATTEMPTS_PER_ENDPOINT_MAX)] = 2
    probe_primary_s: Annotated[float, Field(ge=PROBE_PRIMARY_MIN_S, le=PROBE_PRIMARY_MAX_S)] = 60.0
    network_loss_after_s: Annotated[float, Field(ge=NETWORK_LOSS_MIN_S, le=NETWORK_LOSS_MAX_S)] = (
        120.0
    )
    keepalive_s: Annotated[int, Field(ge=KEEPALIVE_MIN_S, le=KEEPALIVE_MAX_S)] = 60
    tls: bool = False
    username: str | None = None
    password: SecretStr | None = None
    keys_file: Annotated[Path, Field(strict=False)]
    kid: Annotated[str, Field(min_length=1)]
    zip: Literal["deflate", "none"] = "deflate"
    batch_max_records: Annotated[int, Field(ge=1, le=BATCH_MAX_RECORDS_LIMIT)] = 100
    max_inflight: Annotated[int, Field(ge=1, le=MAX_INFLIGHT_LIMIT)] = 4
    heartbeat_s: Annotated[float, Field(ge=HEARTBEAT_MIN_S, le=HEARTBEAT_MAX_S)] = 30
    reconnect_min_s: Annotated[float, Field(gt=0)] = 1.0
    reconnect_max_s: Annotated[float, Field(gt=0)] = 60.0
    # Platform commands (issue #7): both files set = commands on (down/cmd).
    device_key_file: Annotated[Path | None, Field(strict=False)] = None
    platform_public_key_file: Annotated[Path | None, Field(strict=False)] = None

    @model_validator(mode="after")
    def _check_backoff(self) -> UplinkConfig:
        if self.reconnect_max_s < self.reconnect_min_s:
            raise _fail(
                [
                    (
                        ("reconnect_max_s",),
                        f"must be >= reconnect_min_s ({self.reconnect_min_s:g}),"
                        f" got {self.reconnect_max_s:g}",
                        self.reconnect_max_s,
                    )
                ]
            )
        return self

    @model_validator(mode="after")
    def _check_endpoints(self) -> UplinkConfig:
        if not self.endpoints:
            return self
        errors: list[_LocatedError] = []
        for key in ("host", "port"):
            # At its default it says nothing (a full dump of a running config
            # carries the defaults back); anything else would be ignored silently.
            value = getattr(self, key)
            if key in self.model_fields_set and value != type(self).model_fields[key].default:
                reason = "give either uplink.host/port or [[uplink.endpoints]], not both"
                errors.append(((key,), reason, value))
        seen: set[str] = set()
        for i, endpoint in enumerate(self.endpoints):
            if endpoint.label in seen:
                reason = f"endpoint {endpoint.label!r} is listed twice"
                errors.append((("endpoints", i, "name"), reason, endpoint.name))
            seen.add(endpoint.label)
        if errors:
            raise _fail(errors)
        return self


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
    """Keyword arguments of the Gilbarco two-wire driver (protocols.md §4)."""

    model_config = _MODEL_CONFIG

    offline_after: Annotated[int, Field(ge=OFFLINE_AFTER_MIN, le=OFFLINE_AFTER_MAX)] = 3
    volume_decimals: Decimals = 2
    money_decimals: Decimals = 2
    price_decimals: Decimals = 2


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
        if self.mode == "listen" and self.protocol not in protocols.BUS_MONITORS:
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


#: Nozzle keys as the collector builds them (collector/records.py): port,
#: bus address, nozzle — ``p01.a1.n2``.
NOZZLE_KEY_PATTERN = re.compile(r"^p\d{2}\.a\d{1,2}\.n\d{1,2}$")
#: TLS device numbers ``TT`` are two digits, 01..99 (00 means "all").
TANK_NUMBER_MIN, TANK_NUMBER_MAX = 1, 99
#: Report periods of the gauge, seconds: 0.1 s lets tests run a simulated
#: console fast; above an hour a tank's state is no longer "live" (SPEC T1).
GAUGE_PERIOD_MIN_S, GAUGE_PERIOD_MAX_S = 0.1, 3600.0
#: Gauge response timeout: an i202 of 16 tanks × 10 deliveries is ~24 kB,
#: 25 s of line at 9600 baud, so the bound is higher than a dispenser's.
GAUGE_TIMEOUT_MIN_MS, GAUGE_TIMEOUT_MAX_MS = 20, 60_000
#: §5 of the TLS manual: the RS-232 security code is six printable characters.
SECURITY_CODE_PATTERN = re.compile(r"^[ -~]{6}$")
#: Reconciliation period: 1 s for tests, at most a day (regulators reconcile daily).
RECONCILE_MIN_S, RECONCILE_MAX_S = 1.0, 86_400.0


class GaugeConfig(BaseModel):
    """The tank gauge console (SPEC T1–T3), Veeder-Root TLS over RS-232 or TCP."""

    model_config = _MODEL_CONFIG

    enabled: bool = False
    link: Literal["serial", "tcp"] = "serial"
    device: Annotated[str, Field(min_length=1)] | None = None
    baudrate: int = 9600
    bytesize: Literal[7, 8] = 8
    parity: Literal["N", "E", "O"] = "N"
    stopbits: Literal[1, 2] = 1
    host: Annotated[str, Field(min_length=1)] = "127.0.0.1"
    port: Annotated[int, Field(ge=TCP_PORT_MIN, le=TCP_PORT_MAX)] = 10001
    security_code: SecretStr | None = None
    inventory_s: Annotated[float, Field(ge=GAUGE_PERIOD_MIN_S, le=GAUGE_PERIOD_MAX_S)] = 10
    deliveries_s: Annotated[float, Field(ge=GAUGE_PERIOD_MIN_S, le=GAUGE_PERIOD_MAX_S)] = 60
    alarms_s: Annotated[float, Field(ge=GAUGE_PERIOD_MIN_S, le=GAUGE_PERIOD_MAX_S)] = 30
    leak_s: Annotated[float, Field(ge=GAUGE_PERIOD_MIN_S, le=GAUGE_PERIOD_MAX_S)] = 300
    response_timeout_ms: Annotated[int, Field(ge=GAUGE_TIMEOUT_MIN_MS, le=GAUGE_TIMEOUT_MAX_MS)] = (
        2000
    )
    offline_after: Annotated[int, Field(ge=OFFLINE_AFTER_MIN, le=OFFLINE_AFTER_MAX)] = 3

    @field_validator("baudrate")
    @classmethod
    def _check_baudrate(cls, value: int) -> int:
        return PortConfig._check_baudrate(value)

    @field_validator("bytesize", "stopbits", mode="before")
    @classmethod
    def _check_int_literal(cls, value: Any) -> Any:
        return _reject_non_int(value)

    @field_validator("security_code")
    @classmethod
    def _check_security_code(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not SECURITY_CODE_PATTERN.match(value.get_secret_value()):
            raise _invalid("must be 6 printable ASCII characters (TLS manual §5)")
        return value

    @model_validator(mode="after")
    def _check_device(self) -> GaugeConfig:
        if self.enabled and self.link == "serial" and self.device is None:
            raise _fail([(("device",), 'required when link = "serial"', None)])
        return self


class TankConfig(BaseModel):
    """One tank: what the station declared, and which nozzles draw from it (A4, A8)."""

    model_config = _MODEL_CONFIG

    number: Annotated[int, Field(ge=TANK_NUMBER_MIN, le=TANK_NUMBER_MAX)]
    grade: Annotated[str, Field(min_length=1, max_length=STATION_MAX_CHARS)]
    declared_capacity_l: Annotated[float, Field(gt=0)]
    nozzles: list[str] = Field(default_factory=list)

    @field_validator("nozzles")
    @classmethod
    def _check_nozzles(cls, value: list[str]) -> list[str]:
        errors: list[_LocatedError] = []
        seen: set[str] = set()
        for index, key in enumerate(value):
            if not NOZZLE_KEY_PATTERN.match(key):
                errors.append(((index,), f"must be a nozzle key like p01.a1.n2, got {key!r}", key))
            elif key in seen:
                errors.append(((index,), f"duplicate nozzle {key!r}", key))
            seen.add(key)
        if errors:
            raise _fail(errors)
        return value


class WetstockConfig(BaseModel):
    """Edge analytics on the tanks: deliveries from the curve, reconciliation (A3–A5, A8)."""

    model_config = _MODEL_CONFIG

    delivery_min_rise_l: Annotated[float, Field(gt=0)] = 200
    delivery_noise_l: Annotated[float, Field(ge=0)] = 20
    delivery_settle_s: Annotated[float, Field(ge=0)] = 300
    reconcile_period_s: Annotated[float, Field(ge=RECONCILE_MIN_S, le=RECONCILE_MAX_S)] = 3600
    variance_alarm_l: Annotated[float, Field(gt=0)] | None = 100
    variance_alarm_pct: Annotated[float, Field(gt=0, le=100)] | None = None
    capacity_tolerance_pct: Annotated[float, Field(ge=0, le=100)] = 2

    @model_validator(mode="after")
    def _check_threshold(self) -> WetstockConfig:
        if self.variance_alarm_l is None and self.variance_alarm_pct is None:
            raise _fail(
                [(("variance_alarm_l",), "set variance_alarm_l and/or variance_alarm_pct", None)]
            )
        return self


class EdgeConfig(BaseModel):
    """Edge checks on every order (SPEC A1, A2, A7, A10; collector/edge.py)."""

    model_config = _MODEL_CONFIG

    #: grade code → lowest plausible unit price, yuan/L (A10: dumping).
    price_floors: dict[Annotated[str, Field(min_length=1)], Annotated[float, Field(gt=0)]] = Field(
        default_factory=dict
    )
    #: |price × volume − amount| above this many yuan is AMOUNT_MISMATCH (A2).
    amount_tolerance: Annotated[float, Field(ge=0, le=100)] = 0.01


class ClockConfig(BaseModel):
    """``time.sync`` (SPEC D16; collector/clock.py)."""

    model_config = _MODEL_CONFIG

    #: Step the system clock (and write the RTC) when the platform's time is
    #: further than this, ms. Transit of the command (< 1 s on 4G) is inside
    #: the measured offset, so a step below ~1 s would chase the network.
    step_threshold_ms: Annotated[int, Field(ge=0, le=86_400_000)] = 1000
    #: CLOCK_DRIFT alarm above this offset, ms: data were stamped by a wrong clock.
    alarm_threshold_ms: Annotated[int, Field(ge=0, le=86_400_000)] = 5000


class LedsConfig(BaseModel):
    """Run and network LEDs (SPEC D12): directories of /sys/class/leds.

    Absent: no LED is driven. Patterns: collector/leds.py."""

    model_config = _MODEL_CONFIG

    run: Annotated[Path, Field(strict=False)] | None = None
    network: Annotated[Path, Field(strict=False)] | None = None


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
    """One smart lead seal (SPEC F3; collector/seals.py): a digital input."""

    model_config = _MODEL_CONFIG

    name: str
    #: The dispenser it guards, as alarm sources name a pump: ``p01.a1``.
    dispenser: str
    #: The input's sysfs value file, e.g. /sys/class/gpio/gpio17/value.
    value: Annotated[Path, Field(strict=False)]
    #: What the input reads while the seal's loop is closed (intact).
    intact_level: Literal[0, 1] = 1
    poll_ms: Annotated[int, Field(ge=SEAL_PERIOD_MIN_MS, le=SEAL_PERIOD_MAX_MS)] = 500

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if not SEAL_NAME_PATTERN.match(value):
            raise _invalid(f"must be 1..32 of A-Z a-z 0-9 _ . -, got {value!r}")
        return value

    @field_validator("dispenser")
    @classmethod
    def _check_dispenser(cls, value: str) -> str:
        if not DISPENSER_KEY_PATTERN.match(value):
            raise _invalid(f"must be a pump key like p01.a1 (port, address), got {value!r}")
        return value

    @field_validator("intact_level", mode="before")
    @classmethod
    def _check_level(cls, value: Any) -> Any:
        return _reject_non_int(value)


#: Largest bundle ``ota.upgrade`` accepts by default: today's is ~14 MB; 64 MB
#: leaves room to grow and still fits twice on the gateway's 256 MB NAND.
OTA_MAX_BUNDLE_BYTES = 64 * 1024 * 1024


class OtaConfig(BaseModel):
    """Signed A/B upgrades (SPEC D8; collector/ota/, docs/upgrade.md).

    Off unless both ``root`` and ``release_public_key_file`` are set (and
    platform commands are on)."""

    model_config = _MODEL_CONFIG

    #: The launcher's ``--root``: releases/, current, ota-state.json.
    root: Annotated[Path | None, Field(strict=False)] = None
    #: The platform's release SM2 public key (``public = "<128 hex>"``).
    release_public_key_file: Annotated[Path | None, Field(strict=False)] = None
    #: A new release must pass its health gate within this many seconds of
    #: the switch, or it is rolled back. 10 min covers a slow start and a 4G
    #: link that takes minutes to attach.
    health_window_s: Annotated[float, Field(gt=0, le=86_400)] = 600
    #: ... and stay healthy this long before it is marked good: a release that
    #: dies a minute after start is not good.
    health_hold_s: Annotated[float, Field(ge=0, le=3600)] = 60
    max_bundle_bytes: Annotated[int, Field(ge=1024 * 1024, le=1024**3)] = OTA_MAX_BUNDLE_BYTES
    #: Whole download, resumes included: 14 MB at 20 kB/s of poor 4G is 12 min.
    download_timeout_s: Annotated[float, Field(gt=0, le=86_400)] = 3600


class LogConfig(BaseModel):
    model_config = _MODEL_CONFIG

    level: Literal["debug", "info", "warning", "error"] = "info"
    #: ``auto``: key=value on a terminal, JSON lines otherwise (journald).
    format: Literal["auto", "json", "console"] = "auto"


class ControlConfig(BaseModel):
    """The technician CLI's unix socket (issue #9, collector/control.py)."""

    model_config = _MODEL_CONFIG

    #: Created mode 0660: root and the ``forecourt`` group may query the daemon.
    socket: Annotated[str, Field(min_length=1)] = "/run/forecourt/control.sock"


class WebConfig(BaseModel):
    """The local technician web page (issue #9); off unless ``listen`` is set."""

    model_config = _MODEL_CONFIG

    #: ``host:port`` to serve on, e.g. ``0.0.0.0:8080``; absent: no web page.
    listen: str | None = None
    #: The salted scrypt hash file ``forecourt web passwd`` writes (mode 0600).
    password_file: Annotated[str, Field(min_length=1)] = "/etc/forecourt/web-password"


class Config(BaseModel):
    model_config = _MODEL_CONFIG

    device: DeviceConfig
    store: StoreConfig
    uplink: UplinkConfig
    ports: Annotated[list[PortConfig], Field(min_length=1, max_length=MAX_PORTS)]
    log: LogConfig = Field(default_factory=LogConfig)
    gauge: GaugeConfig = Field(default_factory=GaugeConfig)
    tanks: Annotated[list[TankConfig], Field(max_length=TANK_NUMBER_MAX)] = Field(
        default_factory=list
    )
    wetstock: WetstockConfig = Field(default_factory=WetstockConfig)
    edge: EdgeConfig = Field(default_factory=EdgeConfig)
    leds: LedsConfig = Field(default_factory=LedsConfig)
    clock: ClockConfig = Field(default_factory=ClockConfig)
    control: ControlConfig = Field(default_factory=ControlConfig)
    web: WebConfig = Field(default_factory=WebConfig)
    seals: Annotated[list[SealConfig], Field(max_length=MAX_SEALS)] = Field(default_factory=list)
    ota: OtaConfig = Field(default_factory=OtaConfig)

    @model_validator(mode="after")
    def _check_seals(self) -> Config:
        # A seal on a pump no port polls would alarm a dispenser nobody knows;
        # two seals with one name could not be told apart in the alarms.
        pumps = {(p.number, a) for p in self.ports for a in p.addresses}
        errors: list[_LocatedError] = []
        names: set[str] = set()
        for index, seal in enumerate(self.seals):
            if seal.name in names:
                errors.append(
                    (("seals", index, "name"), f"duplicate seal {seal.name!r}", seal.name)
                )
            names.add(seal.name)
            match = DISPENSER_KEY_PATTERN.match(seal.dispenser)
            assert match is not None  # checked by the field
            if (int(match[1]), int(match[2])) not in pumps:
                reason = f"no port polls pump {seal.dispenser!r} ([[ports]] number / addresses)"
                errors.append((("seals", index, "dispenser"), reason, seal.dispenser))
        if errors:
            raise _fail(errors)
        return self

    @field_validator("ports", mode="wrap")
    @classmethod
    def _check_ports_unique(cls, value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        # Two entries for one port number would make two nozzles share a key;
        # two for one device would have two pollers fight over one line.
        # Checked on the raw tables so a duplicate is reported together with
        # the ports' other errors, not only once those are fixed.
        duplicates = _duplicate_ports(value)
        try:
            ports = handler(value)
        except ValidationError as exc:
            if not duplicates:
                raise
            raise _fail(duplicates, exc) from None
        if duplicates:
            raise _fail(duplicates)
        return ports

    @field_validator("tanks")
    @classmethod
    def _check_tanks_unique(cls, value: list[TankConfig]) -> list[TankConfig]:
        # One number twice would split a tank's readings; one nozzle in two
        # tanks would count its sales twice in the reconciliation (A8).
        errors: list[_LocatedError] = []
        numbers: set[int] = set()
        owner: dict[str, int] = {}
        for index, tank in enumerate(value):
            if tank.number in numbers:
                errors.append(
                    ((index, "number"), f"duplicate tank number {tank.number}", tank.number)
                )
            numbers.add(tank.number)
            for n, key in enumerate(tank.nozzles):
                if key in owner and owner[key] != tank.number:
                    where = f"already drawn from tank {owner[key]}"
                    errors.append(((index, "nozzles", n), f"nozzle {key!r} {where}", key))
                owner.setdefault(key, tank.number)
        if errors:
            raise _fail(errors)
        return value


def _duplicate_ports(value: Any) -> list[_LocatedError]:
    """``number`` and ``device`` seen before in an earlier ``[[ports]]`` table."""
    if not isinstance(value, list):
        return []
    errors: list[_LocatedError] = []
    numbers: set[int] = set()
    devices: set[str] = set()
    for index, port in enumerate(value):
        if not isinstance(port, dict):
            continue
        number = port.get("number")
        if isinstance(number, int) and not isinstance(number, bool):
            if number in numbers:
                errors.append(((index, "number"), f"duplicate port number {number}", number))
            numbers.add(number)
        for key in ("device", "pos_device"):
            device = port.get(key)
            if isinstance(device, str):
                if device in devices:
                    errors.append(((index, key), f"duplicate device {device!r}", device))
                devices.add(device)
    return errors
