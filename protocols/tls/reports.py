"""What the tank gauge reports, normalised for the collector (3xx manual §7).

Values are :class:`~decimal.Decimal` — the shortest decimal that is exactly
the float32 on the wire (see :mod:`protocols.tls.wire`) — in the console's
units (litres, millimetres, °C on Chinese stations: the protocol carries no
unit indicator). ``None`` means the field was ``?`` (inactive device, §7.0)
or absent because the record's field count ``NN`` said fewer fields.
Times are naive: the console's own wall clock, minute resolution.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, fields
from datetime import datetime
from decimal import Decimal
from typing import Any, Generic, TypeVar

from protocols.tls.wire import decimal_string

Value = Decimal | None
T = TypeVar("T")


class TankAlarmCode(enum.IntEnum):
    """Tank alarm types: i101 ``NN`` when ``AA`` = 02 (3xx manual §7.2.1, p. 42).

    i205 reports these two-digit codes (decimal, as listed there); i206 the
    same numbers as four hex digits (``000A`` = 10, §7.2.2 p. 65).
    """

    SETUP_DATA_WARNING = 1
    LEAK_ALARM = 2
    HIGH_WATER_ALARM = 3
    OVERFILL_ALARM = 4
    LOW_PRODUCT_ALARM = 5
    SUDDEN_LOSS_ALARM = 6
    HIGH_PRODUCT_ALARM = 7
    INVALID_FUEL_LEVEL_ALARM = 8
    PROBE_OUT_ALARM = 9
    HIGH_WATER_WARNING = 10
    DELIVERY_NEEDED_WARNING = 11
    MAXIMUM_PRODUCT_ALARM = 12
    GROSS_LEAK_TEST_FAIL_ALARM = 13
    PERIODIC_LEAK_TEST_FAIL_ALARM = 14
    ANNUAL_LEAK_TEST_FAIL_ALARM = 15
    PERIODIC_TEST_NEEDED_WARNING = 16
    ANNUAL_TEST_NEEDED_WARNING = 17
    PERIODIC_TEST_NEEDED_ALARM = 18
    ANNUAL_TEST_NEEDED_ALARM = 19
    LEAK_TEST_ACTIVE = 20
    NO_CSLD_IDLE_TIME_WARNING = 21
    SIPHON_BREAK_ACTIVE_WARNING = 22
    CSLD_RATE_INCREASE_WARNING = 23
    ACCUCHART_CALIBRATION_WARNING = 24
    HRM_RECONCILIATION_WARNING = 25
    HRM_RECONCILIATION_ALARM = 26
    COLD_TEMPERATURE_WARNING = 27
    MISSING_DELIVERY_TICKET_WARNING = 28
    TANK_LINE_GROSS_LEAK_ALARM = 29
    DELIVERY_DENSITY_WARNING = 30


def tank_alarm(code: int) -> TankAlarmCode | int:
    """``code`` as a named :class:`TankAlarmCode`, or the bare number if unknown."""
    try:
        return TankAlarmCode(code)
    except ValueError:
        return code


#: i101 ``AA`` alarm/warning categories (3xx manual §7.2.1, p. 41).
ALARM_CATEGORIES: dict[int, str] = {
    0: "ALL_FUNCTIONS_NORMAL",
    1: "SYSTEM",
    2: "TANK",
    3: "LIQUID_SENSOR",
    4: "VAPOR_SENSOR",
    5: "INPUT",
    6: "VOLUMETRIC_LINE_LEAK",
    7: "GROUNDWATER_SENSOR",
    8: "TYPE_A_SENSOR",
    11: "RELAY",  # 4xx manual only
    12: "TYPE_B_SENSOR",
    13: "UNIVERSAL_SENSOR",
    14: "AUTODIAL_FAX",
    18: "MECHANICAL_DISPENSER_INTERFACE",
    19: "ELECTRONIC_DISPENSER_INTERFACE",
    20: "PRODUCT",
    21: "PRESSURE_LINE_LEAK",
    26: "WIRELESS_PLLD",
    28: "SMART_SENSOR",
    29: "MODBUS",
    30: "ISD_SITE",
    31: "ISD_HOSE",
    32: "ISD_VAPOR_FLOW_METER",
    33: "PMC",
    34: "PUMP_RELAY_MONITOR",
    35: "VMCI_DISPENSER_INTERFACE",
    36: "VMC",
    99: "EXTERNALLY_DETECTED",
}

#: i101 ``NN`` when ``AA`` = 01, system alarms (3xx manual §7.2.1, p. 42).
SYSTEM_ALARMS: dict[int, str] = {
    1: "PRINTER_OUT_OF_PAPER",
    2: "PRINTER_ERROR",
    3: "EEPROM_CONFIGURATION_ERROR",
    4: "BATTERY_OFF",
    5: "TOO_MANY_TANKS",
    6: "SYSTEM_SECURITY_WARNING",
    7: "ROM_REVISION_WARNING",
    8: "REMOTE_DISPLAY_COMMUNICATIONS_ERROR",
    9: "AUTODIAL_ERROR",
    10: "SOFTWARE_MODULE_WARNING",
    11: "TANK_TEST_SHUTDOWN_WARNING",
    12: "PROTECTIVE_COVER_ALARM",
    13: "BIR_SHIFT_CLOSE_PENDING",
    14: "BIR_DAILY_CLOSE_PENDING",
    15: "PC_H8_REVISION_WARNING",
    16: "SYSTEM_SELF_TEST_ERROR",
    17: "SYSTEM_CLOCK_INCORRECT_WARNING",
    18: "SYSTEM_DEVICE_POLL_TIMEOUT",
    19: "MAINTENANCE_TRACKER_NVMEM_REMOVED",
    20: "MAINTENANCE_TRACKER_COMM_MODULE_REMOVED",
}

#: Tank status bits of i201 ``ssss`` (§7.2.2 i201 note 4; "Bit 1" is the LSB).
STATUS_DELIVERY_IN_PROGRESS = 0x0001
STATUS_LEAK_TEST_IN_PROGRESS = 0x0002
STATUS_INVALID_HEIGHT = 0x0004  # "Invalid Fuel Height Alarm (MAG Probes Only)"

#: i207 ``RR`` leak report types and i207/i208 ``tt`` test types (§7.2.2).
LEAK_REPORT_TYPES = {0: "LAST_PASSED", 1: "FULLEST_PASSED", 2: "FULLEST_PERIODIC_MONTHLY"}
LEAK_TEST_TYPES = {0: "0.20_GPH", 1: "0.10_GPH", 2: "GROSS_3_GPH"}
#: i208 ``RR`` results.
LEAK_TEST_RESULTS = {0: "INVALID", 1: "PASSED", 2: "FAILED"}


@dataclass(frozen=True, slots=True)
class TankInventory:
    """One i201 record: ``TT p ssss NN`` then NN floats (§7.2.2 i201)."""

    tank: int
    product: str  # one character, 20h–7Eh
    status: int | None  # ssss; None when "????" (inactive device)
    volume: Value = None
    tc_volume: Value = None
    ullage: Value = None
    height: Value = None
    water: Value = None  # water height
    temperature: Value = None
    water_volume: Value = None
    extra: tuple[Value, ...] = ()  # fields beyond the seven the manual lists

    @property
    def delivery_in_progress(self) -> bool:
        return bool((self.status or 0) & STATUS_DELIVERY_IN_PROGRESS)

    @property
    def leak_test_in_progress(self) -> bool:
        return bool((self.status or 0) & STATUS_LEAK_TEST_IN_PROGRESS)

    @property
    def invalid_height(self) -> bool:
        return bool((self.status or 0) & STATUS_INVALID_HEIGHT)

    @property
    def inactive(self) -> bool:
        """§7.0: an inactive device's numbers are all ``?``."""
        return self.status is None and self.volume is None and self.height is None


@dataclass(frozen=True, slots=True)
class TankReport(Generic[T]):
    """A report of per-tank records: the console's clock (``YYMMDDHHmm``, §7),
    the records, the function echoed and the ``TT`` asked for (0 = all)."""

    at: datetime
    tanks: T
    function: str
    query: int = 0


@dataclass(frozen=True, slots=True)
class Inventory(TankReport[list[TankInventory]]):
    """i201 In-Tank Inventory Report."""

    function: str = "i201"


@dataclass(frozen=True, slots=True)
class Delivery:
    """One i202 / i20C delivery: start, end, NN floats (§7.2.2 i202)."""

    start: datetime
    end: datetime
    start_volume: Value = None
    start_tc_volume: Value = None
    start_water: Value = None
    start_temp: Value = None
    end_volume: Value = None
    end_tc_volume: Value = None
    end_water: Value = None
    end_temp: Value = None
    start_height: Value = None
    end_height: Value = None
    # TLS-4xx i20C fields 11–16: start/end mass, density, TC density (4xx manual).
    extra: tuple[Value, ...] = ()

    @property
    def volume(self) -> Value:
        """The increase, end − start volume (the display format's AMOUNT)."""
        if self.start_volume is None or self.end_volume is None:
            return None
        return self.end_volume - self.start_volume

    @property
    def tc_volume(self) -> Value:
        if self.start_tc_volume is None or self.end_tc_volume is None:
            return None
        return self.end_tc_volume - self.start_tc_volume


@dataclass(frozen=True, slots=True)
class TankDeliveries:
    tank: int
    product: str
    deliveries: list[Delivery]  # as the console lists them (most recent first)


@dataclass(frozen=True, slots=True)
class Deliveries(TankReport[list[TankDeliveries]]):
    """i202 In-Tank Delivery Report, or i20C Most Recent Delivery Report."""

    function: str = "i202"


@dataclass(frozen=True, slots=True)
class TankAlarms(TankReport[dict[int, list[TankAlarmCode | int]]]):
    """i205 In-Tank Status Report: active alarm codes per tank (§7.2.2 i205)."""

    function: str = "i205"


@dataclass(frozen=True, slots=True)
class AlarmEvent:
    at: datetime
    code: TankAlarmCode | int


@dataclass(frozen=True, slots=True)
class AlarmHistory(TankReport[dict[int, list[AlarmEvent]]]):
    """i206 In-Tank Alarm History Report (§7.2.2 i206)."""

    function: str = "i206"


@dataclass(frozen=True, slots=True)
class LeakTestHistoryEntry:
    """One i207 report: ``RR nn tt YYMMDDHHmm hours volume percent``."""

    report_type: int  # LEAK_REPORT_TYPES
    history_number: int  # nn: 1, or the month of a fullest periodic test
    test_type: int  # LEAK_TEST_TYPES
    start: datetime
    hours: Value
    volume: Value
    percent_full: Value


@dataclass(frozen=True, slots=True)
class LeakTestHistory(TankReport[dict[int, list[LeakTestHistoryEntry]]]):
    """i207 In-Tank Leak Test History Report (§7.2.2 i207)."""

    function: str = "i207"


@dataclass(frozen=True, slots=True)
class LeakTestResult:
    """One i208 result: ``tt mm YYMMDDHHmm RR rate hours volume``."""

    test_type: int  # LEAK_TEST_TYPES
    manifolded: bool  # mm = 01
    start: datetime
    result: int  # LEAK_TEST_RESULTS
    rate: Value  # volume per hour, negative = loss
    hours: Value
    volume: Value


@dataclass(frozen=True, slots=True)
class LeakTestResults(TankReport[dict[int, list[LeakTestResult]]]):
    """i208 In-Tank Leak Test Results Report (§7.2.2 i208)."""

    function: str = "i208"


LeakTests = LeakTestHistory | LeakTestResults


@dataclass(frozen=True, slots=True)
class SystemAlarm:
    """One i101 ``AANNTT`` group."""

    category: int  # AA, ALARM_CATEGORIES
    type: int  # NN, meaning depends on AA (TankAlarmCode when AA = 02)
    device: int  # TT, tank / sensor number

    @property
    def name(self) -> str:
        if self.category == 2:
            code = tank_alarm(self.type)
            return code.name if isinstance(code, TankAlarmCode) else f"TANK_{self.type:02d}"
        if self.category == 1 and self.type in SYSTEM_ALARMS:
            return SYSTEM_ALARMS[self.type]
        category = ALARM_CATEGORIES.get(self.category, f"CATEGORY_{self.category:02d}")
        return f"{category}_{self.type:02d}"


@dataclass(frozen=True, slots=True)
class SystemStatus:
    """i101 System Status Report: every active or unacknowledged alarm."""

    at: datetime
    alarms: list[SystemAlarm] = field(default_factory=list)
    function: str = "i101"
    query: int = 0

    @property
    def normal(self) -> bool:
        """ "All functions normal": no group, or only ``AA`` = 00 groups."""
        return all(alarm.category == 0 for alarm in self.alarms)


@dataclass(frozen=True, slots=True)
class RawResponse:
    """A well-framed computer-format response of a function we do not parse."""

    function: str  # the 6-char function code echoed
    data: str


Report = (
    Inventory
    | Deliveries
    | TankAlarms
    | AlarmHistory
    | LeakTestHistory
    | LeakTestResults
    | SystemStatus
    | RawResponse
)


#: Report field → quantity of :data:`protocols.tls.wire.QUANTITY_PLACES`.
FIELD_QUANTITIES: dict[str, str] = {
    "volume": "volume",
    "tc_volume": "volume",
    "ullage": "volume",
    "water_volume": "volume",
    "start_volume": "volume",
    "start_tc_volume": "volume",
    "end_volume": "volume",
    "end_tc_volume": "volume",
    "height": "height",
    "water": "height",  # water height
    "start_water": "height",
    "end_water": "height",
    "start_height": "height",
    "end_height": "height",
    "temperature": "temperature",
    "start_temp": "temperature",
    "end_temp": "temperature",
    "rate": "rate",
    "hours": "hours",
    "percent_full": "percent",
}


def decimal_strings(record: Any) -> dict[str, str | None]:
    """The measured fields of a record (TankInventory, Delivery, leak entries) as
    the platform's decimal strings, places per :data:`FIELD_QUANTITIES`."""
    return {
        f.name: decimal_string(getattr(record, f.name), FIELD_QUANTITIES[f.name])
        for f in fields(record)
        if f.name in FIELD_QUANTITIES
    }
