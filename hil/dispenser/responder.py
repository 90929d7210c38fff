"""The interface every simulated dispenser protocol implements, and their registry.

A responder is the *wire* half of a simulated dispenser: it is sans-IO and
clock-free (the simulator core passes ``now``), holds no pump state of its
own beyond what its protocol needs (sequence bits, the last frame sent for a
repeat), and renders / mutates the shared :class:`~hil.dispenser.model.PumpModel`
objects it was built with. The simulator core (``hil/dispenser/sim.py``)
owns fuelling sessions, faults and the line; a new protocol is one module
here plus one entry in :data:`RESPONDERS`.

Contract:

* ``receive_data(data, now)`` gets whatever bytes arrived from the master
  (possibly a partial frame, several frames, or noise) and returns the bytes
  to write back, ``b""`` for silence. It never raises on bad input.
* A pump answers only for its own address, and not at all while the core
  has it powered off (a ``power-cycle`` fault sets
  ``PumpModel.silent_until``): responders check :func:`answering`.
* When the master reads or confirms a sale the responder calls
  :meth:`PumpModel.take`, which is how the core knows a sale was delivered.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import ClassVar, Protocol

from hil.dispenser.model import PumpModel


class Responder(Protocol):
    """One simulated bus: every pump on it, in one protocol."""

    protocol: ClassVar[str]
    #: Does a sale on this wire carry the amount totalizer? Then the ground
    #: truth lines include it and the collector must reproduce it.
    AMOUNT_TOTALIZER: ClassVar[bool]

    def __init__(self, pumps: Sequence[PumpModel]) -> None: ...

    # Optional: ``truth(sale, port_number) -> dict`` when the wire cannot carry
    # every field of SimSale.truth (e.g. no transaction number): the ground
    # truth is then what the collector can really read off this protocol.

    def receive_data(self, data: bytes, now: float) -> bytes:
        """Bytes from the master → bytes to write back (``b""`` = silent)."""
        ...


#: protocol name → (module, class). Imported on first use only, so a
#: protocol whose responder is still being written does not break the others.
RESPONDERS: dict[str, tuple[str, str]] = {
    "sinopec": ("hil.dispenser.sinopec", "SinopecResponder"),
    "dart": ("hil.dispenser.dart", "DartResponder"),
    "gilbarco": ("hil.dispenser.gilbarco", "GilbarcoResponder"),
    "ck1313": ("hil.dispenser.ck1313", "Ck1313Responder"),
    "lanfeng": ("hil.dispenser.lanfeng", "LanfengResponder"),
}


class UnknownResponder(LookupError):
    pass


def load_responder(name: str) -> type[Responder]:
    """The responder class for protocol ``name``, importing its module now."""
    if name not in RESPONDERS:
        known = ", ".join(sorted(RESPONDERS))
        raise UnknownResponder(f"no simulated dispenser for {name!r}; known: {known}")
    module_name, class_name = RESPONDERS[name]
    cls: type[Responder] = getattr(importlib.import_module(module_name), class_name)
    return cls


def answering(pump: PumpModel, now: float) -> bool:
    """False while the pump is powered off (a ``power-cycle`` fault)."""
    return now >= pump.silent_until
