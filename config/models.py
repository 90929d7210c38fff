"""The configuration schema: one pydantic model per TOML table.

Every model forbids unknown keys (a typo must be an error, not a silently
ignored setting) and validates strictly: TOML is typed, so ``port = "1883"``
or ``tls = 1`` is a mistake to report, not to guess at. Cross-field checks
raise errors located at the offending key (``ports.1.number``) so a
technician can find the line to fix.

This module holds the root :class:`Config` and its cross-table checks; the
tables live beside it and are re-exported here, so ``from config.models
import X`` works for every name: config/models_device.py (``[device]``,
``[store]``, ``[clock]``, ``[leds]``, ``[ota]``, ``[log]``, ``[control]``,
``[web]``), config/models_ports.py (``[[ports]]``; each protocol's options
are its package's, validated by config/protocol_options.py),
config/models_uplink.py (``[uplink]``, ``[[uplink.endpoints]]``),
config/models_tanks.py (``[gauge]``, ``[[tanks]]``, ``[wetstock]``),
config/models_checks.py (``[edge]``, ``[books]``), config/models_inputs.py
(``[[seals]]``, ``[[pulses]]``), config/models_base.py (the strict model
config and located errors every model shares).

pydantic costs ~100 ms at import; only ``config.models`` (with its parts) and
``config.loader`` import it, never the poll loop.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import (
    BaseModel,
    Field,
    ValidationError,
    ValidatorFunctionWrapHandler,
    field_validator,
    model_validator,
)

# Every name this module held before its tables moved beside it stays
# importable from here, the helpers they use included.
from config.derived import DeviceDerived as DeviceDerived
from config.derived import WebDerived as WebDerived
from config.derived import parse_listen as parse_listen
from config.derived import parse_offset as parse_offset
from config.models_base import _MODEL_CONFIG, _fail, _LocatedError
from config.models_base import HOST_MAX_CHARS as HOST_MAX_CHARS
from config.models_base import PATH_MAX_BYTES as PATH_MAX_BYTES
from config.models_base import STATION_MAX_CHARS as STATION_MAX_CHARS
from config.models_base import TCP_PORT_MAX as TCP_PORT_MAX
from config.models_base import TCP_PORT_MIN as TCP_PORT_MIN
from config.models_base import FilePath as FilePath
from config.models_base import PathText as PathText
from config.models_base import Whole as Whole
from config.models_base import _invalid as _invalid
from config.models_base import _matching as _matching
from config.models_checks import AMOUNT_TOLERANCE_MAX_YUAN as AMOUNT_TOLERANCE_MAX_YUAN
from config.models_checks import BOOKS_TIMEOUT_MAX_S as BOOKS_TIMEOUT_MAX_S
from config.models_checks import BOOKS_TIMEOUT_MIN_S as BOOKS_TIMEOUT_MIN_S
from config.models_checks import EDGE_GRADES_MAX as EDGE_GRADES_MAX
from config.models_checks import HELD_SALE_MAX_S as HELD_SALE_MAX_S
from config.models_checks import HELD_SALE_MIN_S as HELD_SALE_MIN_S
from config.models_checks import LONGEST_FILL_MAX_S as LONGEST_FILL_MAX_S
from config.models_checks import LONGEST_FILL_MIN_S as LONGEST_FILL_MIN_S
from config.models_checks import MAX_FLOW_MAX_L_PER_MIN as MAX_FLOW_MAX_L_PER_MIN
from config.models_checks import PRICE_MAX_YUAN_PER_L as PRICE_MAX_YUAN_PER_L
from config.models_checks import PUMP_CLOCK_SKEW_MAX_S as PUMP_CLOCK_SKEW_MAX_S
from config.models_checks import BooksConfig as BooksConfig
from config.models_checks import EdgeConfig as EdgeConfig
from config.models_checks import _Grade as _Grade
from config.models_checks import _Prices as _Prices
from config.models_device import CLOCK_THRESHOLD_MAX_MS as CLOCK_THRESHOLD_MAX_MS
from config.models_device import DEVICE_ID_PATTERN as DEVICE_ID_PATTERN
from config.models_device import EVIDENCE_DAYS_MAX as EVIDENCE_DAYS_MAX
from config.models_device import EVIDENCE_MAX_BYTES_MAX as EVIDENCE_MAX_BYTES_MAX
from config.models_device import EVIDENCE_MAX_BYTES_MIN as EVIDENCE_MAX_BYTES_MIN
from config.models_device import OTA_BUNDLE_MAX_BYTES as OTA_BUNDLE_MAX_BYTES
from config.models_device import OTA_BUNDLE_MIN_BYTES as OTA_BUNDLE_MIN_BYTES
from config.models_device import OTA_HOLD_MAX_S as OTA_HOLD_MAX_S
from config.models_device import OTA_MAX_BUNDLE_BYTES as OTA_MAX_BUNDLE_BYTES
from config.models_device import OTA_WINDOW_MAX_S as OTA_WINDOW_MAX_S
from config.models_device import STORE_MAX_BYTES_MAX as STORE_MAX_BYTES_MAX
from config.models_device import STORE_MAX_BYTES_MIN as STORE_MAX_BYTES_MIN
from config.models_device import STORE_MAX_RECORDS_MAX as STORE_MAX_RECORDS_MAX
from config.models_device import STORE_MAX_RECORDS_MIN as STORE_MAX_RECORDS_MIN
from config.models_device import STORE_RETAIN_MAX as STORE_RETAIN_MAX
from config.models_device import STORE_RETAIN_MIN as STORE_RETAIN_MIN
from config.models_device import UNIX_SOCKET_PATH_MAX_BYTES as UNIX_SOCKET_PATH_MAX_BYTES
from config.models_device import WEB_HOST_PATTERN as WEB_HOST_PATTERN
from config.models_device import WEB_HOSTS_MAX as WEB_HOSTS_MAX
from config.models_device import ClockConfig as ClockConfig
from config.models_device import ControlConfig as ControlConfig
from config.models_device import DeviceConfig as DeviceConfig
from config.models_device import LedsConfig as LedsConfig
from config.models_device import LogConfig as LogConfig
from config.models_device import OtaConfig as OtaConfig
from config.models_device import StoreConfig as StoreConfig
from config.models_device import WebConfig as WebConfig
from config.models_device import _parse_offset as _parse_offset
from config.models_inputs import DISPENSER_KEY_PATTERN as DISPENSER_KEY_PATTERN
from config.models_inputs import MAX_PULSE_INPUTS as MAX_PULSE_INPUTS
from config.models_inputs import MAX_SEALS as MAX_SEALS
from config.models_inputs import SEAL_NAME_PATTERN as SEAL_NAME_PATTERN
from config.models_inputs import SEAL_PERIOD_MAX_MS as SEAL_PERIOD_MAX_MS
from config.models_inputs import SEAL_PERIOD_MIN_MS as SEAL_PERIOD_MIN_MS
from config.models_inputs import PulseConfig as PulseConfig
from config.models_inputs import SealConfig as SealConfig
from config.models_inputs import pulse_errors as pulse_errors
from config.models_ports import BAUDRATES as BAUDRATES
from config.models_ports import LINE_CHECK_MAX_S as LINE_CHECK_MAX_S
from config.models_ports import LINE_CHECK_MIN_S as LINE_CHECK_MIN_S
from config.models_ports import LINE_REWIRED_MIN_S as LINE_REWIRED_MIN_S
from config.models_ports import MAX_PORTS as MAX_PORTS
from config.models_ports import OFFLINE_AFTER_MAX as OFFLINE_AFTER_MAX
from config.models_ports import OFFLINE_AFTER_MIN as OFFLINE_AFTER_MIN
from config.models_ports import PUMP_ADDRESS_MAX as PUMP_ADDRESS_MAX
from config.models_ports import PUMP_ADDRESS_MIN as PUMP_ADDRESS_MIN
from config.models_ports import RS485_DELAY_MAX_MS as RS485_DELAY_MAX_MS
from config.models_ports import TIMING_MAX_MS as TIMING_MAX_MS
from config.models_ports import TIMING_MIN_MS as TIMING_MIN_MS
from config.models_ports import PortConfig as PortConfig
from config.models_tanks import GAUGE_PERIOD_MAX_S as GAUGE_PERIOD_MAX_S
from config.models_tanks import GAUGE_PERIOD_MIN_S as GAUGE_PERIOD_MIN_S
from config.models_tanks import GAUGE_TIMEOUT_MAX_MS as GAUGE_TIMEOUT_MAX_MS
from config.models_tanks import GAUGE_TIMEOUT_MIN_MS as GAUGE_TIMEOUT_MIN_MS
from config.models_tanks import NOZZLE_KEY_PATTERN as NOZZLE_KEY_PATTERN
from config.models_tanks import RECONCILE_MAX_S as RECONCILE_MAX_S
from config.models_tanks import RECONCILE_MIN_S as RECONCILE_MIN_S
from config.models_tanks import SECURITY_CODE_PATTERN as SECURITY_CODE_PATTERN
from config.models_tanks import TANK_NUMBER_MAX as TANK_NUMBER_MAX
from config.models_tanks import TANK_NUMBER_MIN as TANK_NUMBER_MIN
from config.models_tanks import GaugeConfig as GaugeConfig
from config.models_tanks import TankConfig as TankConfig
from config.models_tanks import WetstockConfig as WetstockConfig
from config.models_uplink import ATTEMPTS_PER_ENDPOINT_MAX as ATTEMPTS_PER_ENDPOINT_MAX
from config.models_uplink import BATCH_MAX_RECORDS_LIMIT as BATCH_MAX_RECORDS_LIMIT
from config.models_uplink import HEARTBEAT_MAX_S as HEARTBEAT_MAX_S
from config.models_uplink import HEARTBEAT_MIN_S as HEARTBEAT_MIN_S
from config.models_uplink import HTTP_COMMAND_POLL_MAX_S as HTTP_COMMAND_POLL_MAX_S
from config.models_uplink import HTTP_COMMAND_POLL_MIN_S as HTTP_COMMAND_POLL_MIN_S
from config.models_uplink import HTTP_TIMEOUT_MAX_S as HTTP_TIMEOUT_MAX_S
from config.models_uplink import HTTP_TIMEOUT_MIN_S as HTTP_TIMEOUT_MIN_S
from config.models_uplink import IFNAME_MAX_CHARS as IFNAME_MAX_CHARS
from config.models_uplink import KEEPALIVE_MAX_S as KEEPALIVE_MAX_S
from config.models_uplink import KEEPALIVE_MIN_S as KEEPALIVE_MIN_S
from config.models_uplink import MAX_ENDPOINTS as MAX_ENDPOINTS
from config.models_uplink import MAX_INFLIGHT_LIMIT as MAX_INFLIGHT_LIMIT
from config.models_uplink import NETWORK_LOSS_MAX_S as NETWORK_LOSS_MAX_S
from config.models_uplink import NETWORK_LOSS_MIN_S as NETWORK_LOSS_MIN_S
from config.models_uplink import PROBE_PRIMARY_MAX_S as PROBE_PRIMARY_MAX_S
from config.models_uplink import PROBE_PRIMARY_MIN_S as PROBE_PRIMARY_MIN_S
from config.models_uplink import URL_MAX_CHARS as URL_MAX_CHARS
from config.models_uplink import EndpointConfig as EndpointConfig
from config.models_uplink import UplinkConfig as UplinkConfig


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
    books: BooksConfig = Field(default_factory=BooksConfig)
    leds: LedsConfig = Field(default_factory=LedsConfig)
    clock: ClockConfig = Field(default_factory=ClockConfig)
    control: ControlConfig = Field(default_factory=ControlConfig)
    web: WebConfig = Field(default_factory=WebConfig)
    seals: Annotated[list[SealConfig], Field(max_length=MAX_SEALS)] = Field(default_factory=list)
    pulses: Annotated[list[PulseConfig], Field(max_length=MAX_PULSE_INPUTS)] = Field(
        default_factory=list
    )
    ota: OtaConfig = Field(default_factory=OtaConfig)

    @model_validator(mode="after")
    def _check_ota_commands(self) -> Config:
        # An upgrade is a platform command: without commands OTA cannot run.
        u = self.uplink
        if self.ota.root is not None and u.device_key_file is None:
            reason = "OTA needs platform commands (uplink.device_key_file and"
            reason += " platform_public_key_file)"
            raise _fail([(("ota", "root"), reason, str(self.ota.root))])
        return self

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
        errors += pulse_errors(self.pulses, pumps)
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
