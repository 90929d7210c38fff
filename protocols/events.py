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
    totalizer_volume_end: Decimal
    totalizer_amount_end: Decimal | None  # None when the record carries none
    key: str  # stable identity of the dispenser's record (see class doc)
    raw: bytes = field(default=b"", repr=False)  # the record as received, for evidence


@dataclass(frozen=True, slots=True)
class PumpLink:
    """A pump started or stopped answering on its bus address (D2, D14)."""

    address: int
    online: bool


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


Event = NozzleStatus | Sale | PumpLink | ProtocolError
