"""Normalised events every dispenser driver emits.

Drivers are sans-IO: bytes go in, these events come out. Everything above
``protocols/`` (the nozzle model, the store, the uplink) speaks only these
types, so a new dispenser family is one new driver module and nothing else.

Money, volume and price are :class:`decimal.Decimal` in their natural unit
(yuan, litre, yuan per litre), exact as the wire carried them: the platform
wants decimal strings and a float would round.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal


class NozzleState(enum.StrEnum):
    """Nozzle states of the platform's ``nozzle`` body (platform-interface.md)."""

    IDLE = "idle"
    LIFTED = "lifted"
    FUELLING = "fuelling"
    ABNORMAL = "abnormal"
    OFFLINE = "offline"


@dataclass(frozen=True, slots=True)
class NozzleStatus:
    """Live state of one nozzle as the dispenser reported it (D2)."""

    address: int  # bus address of the pump (fuelling point) on this port
    nozzle: int  # nozzle number on that pump, as the dispenser numbers it
    state: NozzleState
    volume: Decimal | None = None  # live volume of the current fill, litres
    amount: Decimal | None = None  # live amount of the current fill, yuan
    price: Decimal | None = None  # unit price, yuan per litre


@dataclass(frozen=True, slots=True)
class Sale:
    """One completed transaction as the dispenser recorded it (D1).

    ``key`` identifies the dispenser's record so that a record the
    dispenser sends twice (because our confirmation was lost, or because the
    collector restarted between storing and confirming) is stored once.
    """

    address: int
    nozzle: int
    order_no: str  # the dispenser's own transaction number
    ended_at: datetime  # naive: the dispenser's local wall clock
    grade: str
    price: Decimal
    volume: Decimal
    amount: Decimal
    #: None only where the wire carried no totalizer with this sale: a passive
    #: monitor whose controller did not read the totals (protocols/udc).
    totalizer_volume_end: Decimal | None
    totalizer_amount_end: Decimal | None  # None when the record carries none
    key: str  # stable identity of the dispenser's record (see class doc)
    raw: bytes = field(default=b"", repr=False)  # the record as received, for evidence
    #: The pump's sequential transaction counter when the protocol has one
    #: (Sinopec POS_TTC: +1 per sale, all nozzles of the pump); None when the
    #: order number is not a counter. The edge checks use it (SPEC A7).
    counter: int | None = None
    #: The number the station controller's confirmation of this sale names
    #: where it is not ``counter`` (Censtar: the record's sequence number,
    #: echoed by the 17 that removes it); the reconciliation with the POS
    #: matches on ``counter``, else on this (collector/station/reconcile.py).
    booking: int | None = None

    @property
    def number(self) -> int | None:
        """What a :class:`Confirmation` of this sale names, if anything."""
        return self.counter if self.counter is not None else self.booking


@dataclass(frozen=True, slots=True)
class Confirmation:
    """The station's POS (or FCC) confirmed a pump's transaction, seen in
    passing by a relay or a tap (collector/station/reconcile.py). Never emitted by a
    poll driver: there the collector is the one confirming.

    ``counter`` is the transaction number it names (:attr:`Sale.number`:
    Sinopec's POS_TTC, Censtar's record sequence number); ``amount`` /
    ``volume`` are the values it booked when the protocol's confirmation
    carries them, else None.
    """

    address: int
    counter: int
    amount: Decimal | None = None
    volume: Decimal | None = None


@dataclass(frozen=True, slots=True)
class PumpLink:
    """A pump started or stopped answering on its bus address (D2, D14)."""

    address: int
    online: bool


@dataclass(frozen=True, slots=True)
class Totals:
    """A nozzle's totalizers read on their own (not with a sale), SPEC D2."""

    address: int
    nozzle: int
    volume: Decimal  # volume totalizer ("pump code"), litres
    amount: Decimal | None  # amount totalizer, yuan; None when the protocol has none


#: GB/T 9081-2023 component names, as in the platform's ``nozzle`` body (D13).
COMPONENT_NAMES = ("nozzle_uid", "mainboard_id", "mcu_id", "encoder_id", "safety_id")


@dataclass(frozen=True, slots=True)
class Identity:
    """Identities a pump reported (SPEC D13, A6).

    ``nozzle`` is None for pump-wide parts. ``components`` maps names from
    :data:`COMPONENT_NAMES` (plus ``pump_id`` for a pump's own serial number,
    e.g. Wayne DC9) to the identity as the pump sent it, as text.
    """

    address: int
    nozzle: int | None
    components: dict[str, str]


#: JJG 443 / GB/T 9081 display codes → normalised alarm codes (protocols.md §5).
METERING_ALARMS: dict[int, str] = {
    61: "SECURITY_AUTH_ERROR",  # core parts failed to authenticate each other
    62: "SECURITY_COMM_ERROR",  # core parts cannot talk to each other
    63: "BOARD_NOT_INITIALISED",  # a part was changed and not initialised
    64: "METERING_OUT_OF_TOLERANCE",  # pulse equivalent beyond ±0.6 %
    65: "ENCODER_FAULT",  # encoder hardware fault
}


@dataclass(frozen=True, slots=True)
class DeviceAlarm:
    """An alarm the pump itself reports, raised or cleared (SPEC D14).

    ``code`` is normalised (e.g. ``METERING_OUT_OF_TOLERANCE``, see
    :data:`METERING_ALARMS`); ``raw_code`` is the pump's own number.
    """

    address: int
    nozzle: int | None
    code: str
    raw_code: int | None
    active: bool
    detail: str = ""


@dataclass(frozen=True, slots=True)
class ProtocolError:
    """Something on the wire was not what the protocol allows.

    ``kind`` is a short stable token used as a counter name
    (``bad_crc``, ``garbage``, ``bad_length``, ``bad_message``,
    ``unexpected``, ``timeout``); ``detail`` is for humans.
    """

    kind: str
    detail: str
    address: int | None = None


Event = (
    NozzleStatus | Sale | Confirmation | PumpLink | Totals | Identity | DeviceAlarm | ProtocolError
)
