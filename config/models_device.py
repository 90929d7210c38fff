"""``[device]``, ``[store]``, ``[clock]``, ``[leds]``, ``[ota]``, ``[log]``,
``[control]``, ``[web]``: the gateway itself, its store and its local services.

Part of the config schema (config/models.py re-exports every name here).
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Literal

from pydantic import BaseModel, Field, field_validator, model_validator

from config.derived import DeviceDerived, WebDerived, parse_listen, parse_offset
from config.models_base import (
    _MODEL_CONFIG,
    STATION_MAX_CHARS,
    FilePath,
    PathText,
    _fail,
    _invalid,
    _matching,
)

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
