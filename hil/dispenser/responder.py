"""The interface every simulated dispenser protocol implements, and their registry.

A responder is the *wire* half of a simulated dispenser: it is sans-IO and
clock-free (the simulator core passes ``now``), holds no pump state of its
own beyond what its protocol needs (sequence bits, the last frame sent for a
repeat), and renders / mutates the shared :class:`~hil.dispenser.model.PumpModel`
objects it was built with. The simulator core (``hil/dispenser/sim.py``)
owns fuelling sessions, faults and the line; a new protocol is one module
here, named by its descriptor's ``responder`` (protocols/descriptor.py).

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

from collections.abc import Sequence
from typing import Any, ClassVar, Protocol

from hil.dispenser.model import PumpModel


class Responder(Protocol):
    """One simulated bus: every pump on it, in one protocol."""

    protocol: ClassVar[str]
    #: Does a sale on this wire carry the amount totalizer? Then the ground
    #: truth lines include it and the collector must reproduce it.
    AMOUNT_TOTALIZER: ClassVar[bool]

    def __init__(self, pumps: Sequence[PumpModel], **options: Any) -> None:
        """``options``: the simulator's ``--option KEY=VALUE`` (a responder
        that takes none refuses any)."""
        ...

    # Optional: ``truth(sale, port_number) -> dict`` when the wire cannot carry
    # every field of SimSale.truth (e.g. no transaction number): the ground
    # truth is then what the collector can really read off this protocol.
    # Optional: ``may_start(pump, nozzle) -> bool``, False while a new fill on
    # that nozzle would end over a record no master has read yet (a pump that
    # keeps one record per nozzle): the core waits, so the truth stays whole.

    def receive_data(self, data: bytes, now: float) -> bytes:
        """Bytes from the master → bytes to write back (``b""`` = silent)."""
        ...


class UnknownResponder(LookupError):
    pass


def simulated() -> list[str]:
    """Protocols with a simulated dispenser: their descriptor names a responder."""
    import protocols

    return sorted(d.name for d in protocols.descriptors() if d.responder is not None)


def load_responder(name: str) -> type[Responder]:
    """The responder class of protocol ``name`` (its descriptor's ``responder``),
    importing its module now, so a protocol whose responder is still being
    written does not break the others."""
    import protocols

    try:
        found = protocols.descriptor(name)
    except protocols.UnknownProtocol:
        found = None
    if found is None or found.responder is None:
        known = ", ".join(simulated())
        raise UnknownResponder(f"no simulated dispenser for {name!r}; known: {known}")
    cls: type[Responder] = found.load("responder")
    return cls


def answering(pump: PumpModel, now: float) -> bool:
    """False while the pump is powered off (a ``power-cycle`` fault)."""
    return now >= pump.silent_until
