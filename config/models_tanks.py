"""``[gauge]``, ``[[tanks]]``, ``[wetstock]``: the tank gauge and what is drawn from it.

Part of the config schema (config/models.py re-exports every name here).
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator

from config.models_base import (
    _MODEL_CONFIG,
    STATION_MAX_CHARS,
    TCP_PORT_MAX,
    TCP_PORT_MIN,
    HostName,
    PathText,
    _fail,
    _invalid,
    _LocatedError,
    _repeats,
)
from config.models_ports import (
    OFFLINE_AFTER_MAX,
    OFFLINE_AFTER_MIN,
    Baudrate,
    ByteSize,
    Parity,
    StopBits,
)

#: Nozzle keys as the collector builds them (collector/station/records.py): port,
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
#: A station's largest underground tank holds ~60 000 L; 1 000 000 L (a
#: terminal's tank) is past any forecourt, and so is every volume threshold
#: below (a delivery, a noise band, a variance larger than the tank).
TANK_CAPACITY_MAX_L = 1_000_000.0
#: A delivery settles (foam, temperature) within minutes; a day is the most.
DELIVERY_SETTLE_MAX_S = 86_400.0
#: Nozzles drawing from one tank: 32 ports × a few nozzles each at most.
TANK_NOZZLES_MAX = 128


class GaugeConfig(BaseModel):
    """The tank gauge console (SPEC T1–T3), Veeder-Root TLS over RS-232 or TCP."""

    model_config = _MODEL_CONFIG

    enabled: bool = False
    link: Literal["serial", "tcp"] = "serial"
    device: PathText | None = None
    baudrate: Baudrate = 9600
    bytesize: ByteSize = 8
    parity: Parity = "N"
    stopbits: StopBits = 1
    host: HostName = "127.0.0.1"
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
    declared_capacity_l: Annotated[float, Field(gt=0, le=TANK_CAPACITY_MAX_L)]
    nozzles: Annotated[list[str], Field(max_length=TANK_NOZZLES_MAX)] = Field(default_factory=list)

    @field_validator("nozzles")
    @classmethod
    def _check_nozzles(cls, value: list[str]) -> list[str]:
        errors: list[_LocatedError] = []
        repeated = dict(_repeats(value))
        for index, key in enumerate(value):
            if not NOZZLE_KEY_PATTERN.match(key):
                errors.append(((index,), f"must be a nozzle key like p01.a1.n2, got {key!r}", key))
            elif index in repeated:
                errors.append(((index,), f"duplicate nozzle {key!r}", key))
        if errors:
            raise _fail(errors)
        return value


class WetstockConfig(BaseModel):
    """Edge analytics on the tanks: deliveries from the curve, reconciliation (A3–A5, A8)."""

    model_config = _MODEL_CONFIG

    delivery_min_rise_l: Annotated[float, Field(gt=0, le=TANK_CAPACITY_MAX_L)] = 200
    delivery_noise_l: Annotated[float, Field(ge=0, le=TANK_CAPACITY_MAX_L)] = 20
    delivery_settle_s: Annotated[float, Field(ge=0, le=DELIVERY_SETTLE_MAX_S)] = 300
    reconcile_period_s: Annotated[float, Field(ge=RECONCILE_MIN_S, le=RECONCILE_MAX_S)] = 3600
    variance_alarm_l: Annotated[float, Field(gt=0, le=TANK_CAPACITY_MAX_L)] | None = 100
    variance_alarm_pct: Annotated[float, Field(gt=0, le=100)] | None = None
    capacity_tolerance_pct: Annotated[float, Field(ge=0, le=100)] = 2

    @model_validator(mode="after")
    def _check_threshold(self) -> WetstockConfig:
        if self.variance_alarm_l is None and self.variance_alarm_pct is None:
            raise _fail(
                [(("variance_alarm_l",), "set variance_alarm_l and/or variance_alarm_pct", None)]
            )
        return self
