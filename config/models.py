"""The configuration schema: one pydantic model per TOML table.

Every model forbids unknown keys (a typo must be an error, not a silently
ignored setting) and validates strictly: TOML is typed, so ``port = "1883"``
or ``tls = 1`` is a mistake to report, not to guess at. Cross-field checks
raise errors located at the offending key (``ports.1.number``) so a
technician can find the line to fix.

This module holds the root :class:`Config`, its cross-table checks and the
small tables; the larger ones live beside it and are re-exported here, so
``from config.models import X`` works for every name: config/models_ports.py
(``[[ports]]``; each protocol's options are its package's, validated by
config/protocol_options.py), config/models_uplink.py
(``[uplink]``, ``[[uplink.endpoints]]``), config/models_tanks.py
(``[gauge]``, ``[[tanks]]``, ``[wetstock]``), config/models_base.py (the
strict model config and located errors every model shares).

pydantic costs ~100 ms at import; only ``config.models`` (with its parts) and
``config.loader`` import it, never the poll loop.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    Field,
    ValidationError,
    ValidatorFunctionWrapHandler,
    field_validator,
    model_validator,
)

import protocols
from config.derived import DeviceDerived, WebDerived, parse_listen, parse_offset
from config.models_base import (
    _MODEL_CONFIG,
    FilePath,
    PathText,
    Whole,
    _fail,
    _invalid,
    _LocatedError,
    _matching,
)
from config.models_base import HOST_MAX_CHARS as HOST_MAX_CHARS
from config.models_base import PATH_MAX_BYTES as PATH_MAX_BYTES
from config.models_base import STATION_MAX_CHARS as STATION_MAX_CHARS
from config.models_base import TCP_PORT_MAX as TCP_PORT_MAX
from config.models_base import TCP_PORT_MIN as TCP_PORT_MIN
from config.models_inputs import MAX_PULSE_INPUTS as MAX_PULSE_INPUTS
from config.models_inputs import PulseConfig as PulseConfig
from config.models_inputs import pulse_errors
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

#: The device id is the MQTT client id and a topic segment
#: (``forecourt/v1/{id}/…``): MQTT wildcards ``+ #`` and the level separator
#: ``/`` would break the topic tree, and 64 characters stay well inside the
#: 23..65535 client-id range every broker accepts once configured.
DEVICE_ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
#: SPEC D4 is a floor: a config cannot promise fewer retained orders per nozzle.
STORE_RETAIN_MIN = 2000
#: Below 32 ports x 2 nozzles x 2000 retained orders, the cap could never be met.
STORE_MAX_RECORDS_MIN = 128_000
#: 16 MiB: below it the D4 floor of a small station would not fit either.
STORE_MAX_BYTES_MIN = 16 * 1024 * 1024
#: 10 million records at ≥ 280 B each is ≥ 2.8 GB: more than the flash of any
#: gateway this runs on (256 MB NAND, or an SD card of a few GB) can hold.
STORE_MAX_RECORDS_MAX = 10_000_000
#: 50 times the D4 floor: a nozzle's year of sales at a busy station.
STORE_RETAIN_MAX = 100_000
#: 64 GiB: past the largest storage a gateway carries; the disk fills first
#: (STORE_FULL) and the cap never binds.
STORE_MAX_BYTES_MAX = 64 * 1024**3
#: The raw log (buffer/rawlog.py): 1 MiB holds an idle port's weeks, the
#: smallest budget that means anything; 16 GiB is past any gateway's storage.
EVIDENCE_MAX_BYTES_MIN = 1024 * 1024
EVIDENCE_MAX_BYTES_MAX = 16 * 1024**3
#: Days of raw log: 0 is off; a year is past any inspection window.
EVIDENCE_DAYS_MAX = 366


class DeviceConfig(DeviceDerived, BaseModel):
    model_config = _MODEL_CONFIG

    id: Annotated[
        str,
        _matching(
            DEVICE_ID_PATTERN,
            "must be 1..64 of A-Z a-z 0-9 _ - (it is the MQTT client id and a topic segment)",
        ),
    ]
    station: Annotated[str, Field(min_length=1, max_length=STATION_MAX_CHARS)]
    timezone: str = "+08:00"

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
    #: An existing file must be one of our stores (collector/remote/config_env.py).
    path: FilePath
    #: Total records kept (every kind), sized for 30 days of a busy station
    #: (SPEC A9; arithmetic in docs/store.md). Above it acknowledged records go
    #: first, oldest first; unsent ones only when they alone exceed it (alarmed).
    max_records: Annotated[int, Field(ge=STORE_MAX_RECORDS_MIN, le=STORE_MAX_RECORDS_MAX)] = 250_000
    #: Newest orders per nozzle never evicted (SPEC D4: at least 2000).
    retain_per_nozzle: Annotated[int, Field(ge=STORE_RETAIN_MIN, le=STORE_RETAIN_MAX)] = 2000
    #: Bytes of SQLite pages in use the records may take (same eviction rules).
    max_bytes: Annotated[int, Field(ge=STORE_MAX_BYTES_MIN, le=STORE_MAX_BYTES_MAX)] = (
        100 * 1024 * 1024
    )
    #: Days the raw bytes of every dispenser line are kept (buffer/rawlog.py,
    #: ``<store>.evidence.sqlite``; ``evidence.fetch``); 0: no raw log.
    evidence_days: Annotated[int, Field(ge=0, le=EVIDENCE_DAYS_MAX)] = 30
    #: Bytes of raw-log pages in use; past it (or past ``evidence_days``) the
    #: oldest blocks go first, counted per port (docs/store.md "Raw log").
    evidence_max_bytes: Annotated[
        int, Field(ge=EVIDENCE_MAX_BYTES_MIN, le=EVIDENCE_MAX_BYTES_MAX)
    ] = 64 * 1024 * 1024


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


#: A day: a clock further off than that is not drift but a wrong date, and the
#: alarm threshold beyond it would never fire.
CLOCK_THRESHOLD_MAX_MS = 86_400_000


class ClockConfig(BaseModel):
    """``time.sync`` (SPEC D16; collector/device/clock.py)."""

    model_config = _MODEL_CONFIG

    #: Step the system clock (and write the RTC) when the platform's time is
    #: further than this, ms. Transit of the command (< 1 s on 4G) is inside
    #: the measured offset, so a step below ~1 s would chase the network.
    step_threshold_ms: Annotated[int, Field(ge=0, le=CLOCK_THRESHOLD_MAX_MS)] = 1000
    #: CLOCK_DRIFT alarm above this offset, ms: data were stamped by a wrong clock.
    alarm_threshold_ms: Annotated[int, Field(ge=0, le=CLOCK_THRESHOLD_MAX_MS)] = 5000


class LedsConfig(BaseModel):
    """Run and network LEDs (SPEC D12): directories of /sys/class/leds.

    Absent: no LED is driven. Patterns: collector/device/leds.py."""

    model_config = _MODEL_CONFIG

    run: FilePath | None = None
    network: FilePath | None = None


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


#: Largest bundle ``ota.upgrade`` accepts by default: today's is ~14 MB; 64 MB
#: leaves room to grow and still fits twice on the gateway's 256 MB NAND.
OTA_MAX_BUNDLE_BYTES = 64 * 1024 * 1024
#: A bundle of at least 1 MiB (today's is ~14 MB) and at most 1 GiB: four
#: times the gateway's whole NAND is a typo, not a release.
OTA_BUNDLE_MIN_BYTES, OTA_BUNDLE_MAX_BYTES = 1024 * 1024, 1024**3
#: A day: the longest a health window or a download may take before the
#: upgrade is given up (a longer one leaves the box in a trial for days).
OTA_WINDOW_MAX_S = 86_400
#: An hour of staying healthy is proof enough before a release is marked good.
OTA_HOLD_MAX_S = 3600


class OtaConfig(BaseModel):
    """Signed A/B upgrades (SPEC D8; collector/ota/, docs/upgrade.md).

    Off unless both ``root`` and ``release_public_key_file`` are set (and
    platform commands are on)."""

    model_config = _MODEL_CONFIG

    #: The launcher's ``--root``: releases/, current, ota-state.json.
    root: FilePath | None = None
    #: The platform's release SM2 public key (``public = "<128 hex>"``).
    release_public_key_file: FilePath | None = None
    #: A new release must pass its health gate within this many seconds of
    #: the switch, or it is rolled back. 10 min covers a slow start and a 4G
    #: link that takes minutes to attach.
    health_window_s: Annotated[float, Field(gt=0, le=OTA_WINDOW_MAX_S)] = 600
    #: ... and stay healthy this long before it is marked good: a release that
    #: dies a minute after start is not good.
    health_hold_s: Annotated[float, Field(ge=0, le=OTA_HOLD_MAX_S)] = 60
    max_bundle_bytes: Annotated[int, Field(ge=OTA_BUNDLE_MIN_BYTES, le=OTA_BUNDLE_MAX_BYTES)] = (
        OTA_MAX_BUNDLE_BYTES
    )
    #: Whole download, resumes included: 14 MB at 20 kB/s of poor 4G is 12 min.
    download_timeout_s: Annotated[float, Field(gt=0, le=OTA_WINDOW_MAX_S)] = 3600

    @model_validator(mode="after")
    def _check_both(self) -> OtaConfig:
        # One without the other cannot upgrade: the start would refuse it.
        for key, other in (
            ("root", "release_public_key_file"),
            ("release_public_key_file", "root"),
        ):
            if getattr(self, key) is None and getattr(self, other) is not None:
                raise _fail([((key,), f"required with ota.{other} (or set neither)", None)])
        return self


class LogConfig(BaseModel):
    model_config = _MODEL_CONFIG

    level: Literal["debug", "info", "warning", "error"] = "info"
    #: ``auto``: key=value on a terminal, JSON lines otherwise (journald).
    format: Literal["auto", "json", "console"] = "auto"


#: A unix socket's path is at most 107 bytes (sun_path is 108 with its NUL).
UNIX_SOCKET_PATH_MAX_BYTES = 107


class ControlConfig(BaseModel):
    """The technician CLI's unix socket (collector/tools/control.py)."""

    model_config = _MODEL_CONFIG

    #: Created mode 0660: root and the ``forecourt`` group may query the daemon.
    socket: PathText = "/run/forecourt/control.sock"

    @field_validator("socket")
    @classmethod
    def _check_socket(cls, value: str) -> str:
        size = len(value.encode("utf-8", "surrogatepass"))
        if size > UNIX_SOCKET_PATH_MAX_BYTES:
            raise _invalid(
                f"a unix socket path is at most {UNIX_SOCKET_PATH_MAX_BYTES} bytes, got {size}"
            )
        return value


#: Names in ``[web] hosts``: a TLS proxy's name or two is all a station needs.
WEB_HOSTS_MAX = 8
WEB_HOST_PATTERN = re.compile(r"^[A-Za-z0-9.\-\[\]:]{1,253}$")


class WebConfig(WebDerived, BaseModel):
    """The local technician web page; off unless ``listen`` is set."""

    model_config = _MODEL_CONFIG

    #: ``host:port`` to serve on; a port alone (``"8080"``) is loopback only.
    #: Other interfaces are named explicitly (``"0.0.0.0:8080"``); put TLS in
    #: front for a LAN (docs/security.md).
    listen: str | None = None
    #: Other names the page is reached by (``Host``), e.g. a TLS proxy's
    #: ``collector.station.lan``; the address it is bound to always works.
    hosts: Annotated[list[str], Field(max_length=WEB_HOSTS_MAX)] = Field(default_factory=list)
    #: The salted scrypt hash file ``forecourt web passwd`` writes (mode 0600).
    password_file: PathText = "/etc/forecourt/web-password"

    @field_validator("listen")
    @classmethod
    def _check_listen(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                parse_listen(value)
            except ValueError as exc:
                raise _invalid(str(exc)) from None
        return value

    @field_validator("hosts")
    @classmethod
    def _check_hosts(cls, value: list[str]) -> list[str]:
        for host in value:
            if not WEB_HOST_PATTERN.match(host):
                raise _invalid(f"must be host names or host:port, got {host!r}")
        return value


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
