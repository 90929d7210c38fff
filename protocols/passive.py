"""What every passive monitor (port modes ``relay`` and ``listen``) does alike, sans-IO.

A family's monitor (``protocols/<name>/monitor.py``) frames the bytes of
each side and reads what its pumps answer: its protocol's own. The skeleton
they all share lives here, in :class:`PassiveMonitor`; it never builds a
byte (SPEC D19, D20).

- The wires of a relay (:class:`Wire`: a decoder, what the family does
  with its items, what it gives up on spoilt bytes): ``receive_request``
  reads the POS's, ``receive_response`` the pumps'; a family that hears
  both on one line has a tap too (:class:`Tap`, ``receive_bus``), or reads
  its bus itself. Each wire walks its decoder's items: an error as it is,
  any other item to the family (:func:`walk`).
- Counters: ``requests``, ``responses``, ``own_responses`` (of our pumps)
  and ``foreign``; the family's own (``_COUNTERS``); the POS's commands by
  name (``pos_cmd_<name>``, :meth:`~PassiveMonitor._command`); each
  decoder's under its wire's prefix (``pos_`` the POS's, none the pumps',
  ``bus_`` a tap; :func:`protocols.stream.with_decoders`).
- Pumps not in ``addresses`` are counted ``foreign``, by address in
  ``foreign_addresses`` (:meth:`~PassiveMonitor._known`).
- Link state: a pump is online from its first reply; after
  ``offline_after`` requests to it in a row with no reply, offline
  (:meth:`~PassiveMonitor._asking`, :meth:`~PassiveMonitor._answered`: a
  :class:`PumpLink` either way; what the family forgets of a pump gone
  offline: :meth:`~PassiveMonitor._offline`).
- A :class:`NozzleStatus` is reported when it differs from the pump's last
  one (:meth:`~PassiveMonitor._report`; forgotten when the pump goes
  offline).
- The port's decimal places, for a family that scales the wire's counts
  itself (:class:`ScaledMonitor`: Censtar, UDC, the totals families).

Uninfo's monitor names the replies of its pumps ``replies`` (not
``responses``, ``own_responses``) and gives up what a spoilt reply names
(``spoilt``, :func:`walk`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, Generic, Protocol, TypeVar

from protocols.base import at_least_one
from protocols.bcd import scaled
from protocols.events import Event, NozzleStatus, ProtocolError, PumpLink, Totals
from protocols.stream import Counting, with_decoders
from protocols.totalsale import Decimals

#: Requests to a pump in a row with no reply before it is reported offline:
#: the poll drivers' default (``fangym0335/first src/pub.h:99``).
OFFLINE_AFTER = 3

Item = TypeVar("Item")
Item_co = TypeVar("Item_co", covariant=True)


def walk(
    items: Iterable[Item | ProtocolError],
    take: Callable[[Item], list[Event]],
    lost: Callable[[], object] | None = None,
    spoilt: Callable[[ProtocolError], object] | None = None,
) -> list[Event]:
    """The events of a decoder's ``items`` in order: an error as it is (after
    ``lost()``: what the family gives up on spoilt bytes, and ``spoilt(error)``
    for a family that gives up what the error names), any other item through
    ``take``."""
    events: list[Event] = []
    for item in items:
        if isinstance(item, ProtocolError):
            if lost is not None:
                lost()
            if spoilt is not None:
                spoilt(item)
            events.append(item)
        else:
            events += take(item)
    return events


class Decoder(Protocol[Item_co]):
    """A wire's framer: bytes in, items and errors out, counted."""

    @property
    def counters(self) -> dict[str, int]: ...

    def receive_data(self, data: bytes) -> Sequence[Item_co | ProtocolError]: ...


@dataclass(frozen=True)
class Wire(Generic[Item]):
    """One wire of a relay (the POS's or the pumps'): its decoder, what the
    family does with each item and what it gives up on spoilt bytes (:func:`walk`)."""

    decoder: Decoder[Item]
    take: Callable[[Item], list[Event]]
    lost: Callable[[], object] | None = None
    spoilt: Callable[[ProtocolError], object] | None = None

    def receive(self, data: bytes) -> list[Event]:
        return walk(self.decoder.receive_data(data), self.take, self.lost, self.spoilt)


class PassiveMonitor:
    """The skeleton of a family's monitor (module doc); a family sets ``name``,
    ``_COUNTERS`` (the counters of its own) and its wires (:meth:`_wire`)."""

    _pos_wire: Wire[Any]
    _pump_wire: Wire[Any]
    _tap_wire: Wire[Any]

    name: ClassVar[str]
    #: The counters the skeleton keeps (Uninfo's name its pumps' replies
    #: ``replies``), then the family's own.
    _SHARED: ClassVar[tuple[str, ...]] = ("requests", "responses", "own_responses", "foreign")
    _COUNTERS: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self,
        addresses: Sequence[int],
        *,
        offline_after: int = OFFLINE_AFTER,
        clock: Callable[[], datetime] = datetime.now,
    ) -> None:
        at_least_one(offline_after=offline_after)
        self._offline_after = offline_after
        self._clock = clock
        #: Per pump: online (None: not heard of yet), requests in a row unanswered.
        self._online: dict[int, bool | None] = dict.fromkeys(addresses)
        self._unanswered: dict[int, int] = dict.fromkeys(addresses, 0)
        self._reported: dict[int, NozzleStatus] = {}
        self._counts: dict[str, int] = dict.fromkeys((*self._SHARED, *self._COUNTERS), 0)
        #: The POS's commands seen, by name (a fixed set of names: bounded).
        self._commands: dict[str, int] = {}
        #: Each decoder with its wire's prefix (:meth:`_wire`).
        self._decoders: tuple[tuple[str, Counting], ...] = ()
        #: Frames to or from each pump not in ``addresses`` (bounded by the
        #: family's address space).
        self.foreign_addresses: dict[int, int] = {}

    @property
    def counters(self) -> dict[str, int]:
        out = dict(self._counts)
        out.update((f"pos_cmd_{name}", n) for name, n in self._commands.items())
        return with_decoders(out, self._decoders)

    def receive_request(self, data: bytes) -> list[Event]:
        """Bytes the POS sent (relay: read on its side)."""
        return self._pos_wire.receive(data)

    def receive_response(self, data: bytes) -> list[Event]:
        """Bytes the pumps sent (relay: read on the dispenser side)."""
        return self._pump_wire.receive(data)

    # ------------------------------------------------------------ for the family

    def _wire(
        self, pos: Wire[Any], pumps: Wire[Any], bus: Wire[Any] | Counting | None = None
    ) -> None:
        """The family's wires: the POS's, the pumps' and, for a family that
        listens on one line, its tap (a :class:`Tap`'s wire, or the decoder of
        the family's own ``receive_bus``); their decoders' counters under
        ``pos_``, none and ``bus_``."""
        self._pos_wire, self._pump_wire = pos, pumps
        self._decoders = (("pos_", pos.decoder), ("", pumps.decoder))
        if isinstance(bus, Wire):
            self._tap_wire = bus
            self._decoders += (("bus_", bus.decoder),)
        elif bus is not None:
            self._decoders += (("bus_", bus),)

    def _count(self, name: str) -> None:
        self._counts[name] += 1

    def _command(self, name: str) -> None:
        """A POS command (one the collector never sends) seen."""
        self._commands[name] = self._commands.get(name, 0) + 1

    def _known(self, address: int) -> bool:
        """Whether ``address`` is one of ours; another is counted ``foreign``."""
        if address in self._online:
            return True
        self._counts["foreign"] += 1
        self.foreign_addresses[address] = self.foreign_addresses.get(address, 0) + 1
        return False

    def _asking(self, address: int) -> list[Event]:
        """A request to our pump ``address`` that wants a reply."""
        self._unanswered[address] += 1
        if self._unanswered[address] > self._offline_after and self._online[address] is not False:
            # More than offline_after in a row: the last one had its chance to
            # be answered before this one was sent.
            self._online[address] = False
            self._reported.pop(address, None)
            self._offline(address)
            return [PumpLink(address, online=False)]
        return []

    def _answered(self, address: int) -> list[Event]:
        """A reply of our pump ``address``: online (a PumpLink when it was not)."""
        self._unanswered[address] = 0
        if self._online[address] is True:
            return []
        self._online[address] = True
        return [PumpLink(address, online=True)]

    def _reply_from(self, address: int, *, foreign: bool = True) -> list[Event] | None:
        """A reply (``responses``) naming pump ``address``: None when it is not
        ours (counted ``foreign`` unless not ``foreign``), else its link events
        (``own_responses``)."""
        self._counts["responses"] += 1
        if not (self._known(address) if foreign else address in self._online):
            return None
        self._counts["own_responses"] += 1
        return self._answered(address)

    def _offline(self, address: int) -> None:
        """What the family forgets of a pump gone offline (nothing here)."""

    def _report(self, status: NozzleStatus) -> list[Event]:
        """``status`` when it differs from the last one reported of its pump."""
        if self._reported.get(status.address) == status:
            return []
        self._reported[status.address] = status
        return [status]


class Tap:
    """A monitor that also listens: one line carrying both sides, read through
    the tap's wire (:meth:`PassiveMonitor._wire`)."""

    _tap_wire: Wire[Any]

    def receive_bus(self, data: bytes) -> list[Event]:
        """Bytes of one line carrying both sides (port mode ``listen``)."""
        return self._tap_wire.receive(data)


class ScaledMonitor(PassiveMonitor):
    """A monitor that scales the wire's counts itself: the port's decimal
    places (``volume_decimals``, ``amount_decimals``, ``price_decimals``), which
    a family that passes ``**options`` on takes through this signature."""

    def __init__(
        self,
        addresses: Sequence[int],
        *,
        offline_after: int = OFFLINE_AFTER,
        volume_decimals: int = 2,
        amount_decimals: int = 2,
        price_decimals: int = 2,
        clock: Callable[[], datetime] = datetime.now,
    ) -> None:
        super().__init__(addresses, offline_after=offline_after, clock=clock)
        self._dp = Decimals(volume_decimals, amount_decimals, price_decimals)

    def _totals(self, address: int, nozzle: int, volume: int, amount: int) -> Totals:
        """A Totals event from the wire's counts."""
        return Totals(
            address,
            nozzle,
            scaled(volume, self._dp.volume),
            scaled(amount, self._dp.amount),
        )
