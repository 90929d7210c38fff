"""The surface every dispenser driver offers to a port task.

A driver is a sans-IO state machine for one serial line (one bus, possibly
several pump addresses). The port task owns the I/O and the clock:

    request = driver.next_request()        # bytes to write, or None
    ... write, then feed what arrives ...
    events = driver.receive_data(chunk)    # until not driver.awaiting_response
    events = driver.response_timeout()     # when the deadline passed first

Store first: a :class:`~protocols.events.Sale` is confirmed to the
dispenser only after the port task has committed it and called
:meth:`PollDriver.sale_committed`; until then the dispenser keeps offering
it, so a crash between receipt and commit loses nothing.

Pace: a driver whose exchanges take several requests (DART, Gilbarco) may
offer a ``mid_exchange`` property; while it is True the port sends the next
request after the line's inter-frame gap instead of a poll interval later.

Shared by the pollers: :class:`RequestReply` (one request in flight, its
replies read through a framer, the deadline's first steps), :func:`link_up`
and :func:`answered` (a pump is online at its first answer), :func:`link_down`
and :func:`missed` (offline after ``offline_after`` requests without one) and
:func:`at_least_one` (the check of a driver's counts).

Read-only (SPEC D20): every driver declares ``ALLOWED_COMMANDS``, the only
command codes it may ever put on the wire, and checks each request against
it before returning it. A test drives every driver with arbitrary input and
proves nothing else leaves it.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

from protocols.events import Event, ProtocolError, PumpLink, Sale


class ForbiddenCommand(RuntimeError):
    """A driver tried to emit a command outside its read-only allow-list (D20)."""


class PollDriver(Protocol):
    """A driver that is master on its line (port mode ``poll``)."""

    name: ClassVar[str]
    ALLOWED_COMMANDS: ClassVar[frozenset[int]]

    @property
    def awaiting_response(self) -> bool:
        """True between a request and the end of its response (or its timeout)."""
        ...

    @property
    def counters(self) -> dict[str, int]:
        """Monotonic counters: frames, bad_crc, garbage_bytes, timeouts …"""
        ...

    def next_request(self) -> bytes | None:
        """The next read-only request to write, already framed."""
        ...

    def receive_data(self, data: bytes) -> list[Event]:
        """Feed bytes from the line; return the events they complete."""
        ...

    def response_timeout(self) -> list[Event]:
        """The response deadline passed; return what that means (e.g. offline)."""
        ...

    def sale_committed(self, sale: Sale) -> None:
        """The sale is durable in the store: confirm it on the next request."""
        ...


class Framer(Protocol):
    """A framer as a driver uses it: bytes in, frames and errors out."""

    counters: dict[str, int]

    def receive_data(self, data: bytes) -> list[Any]: ...

    def flush(self) -> list[Any]: ...


class OneInFlight:
    """A poll master with at most one request in flight: ``_expect``, what
    it awaits (None when nothing)."""

    _expect: Any

    @property
    def awaiting_response(self) -> bool:
        return self._expect is not None


class RequestReply(OneInFlight):
    """A poll master with one request in flight that reads its replies
    through a framer (DART, Furen, Sinopec): counting, feeding, and the
    deadline's first steps.

    A subclass sets ``_decoder`` (its framer), ``_counts`` (its own counters,
    ``frames_rx`` and ``timeouts`` among them) and ``_expect``, and says
    what a frame means (:meth:`_on_frame`) and what a request left
    unanswered means (:meth:`_no_answer`).
    """

    _decoder: Framer
    _counts: dict[str, int]

    @property
    def counters(self) -> dict[str, int]:
        return {**self._decoder.counters, **self._counts}

    def receive_data(self, data: bytes) -> list[Event]:
        return self._take(self._decoder.receive_data(data))

    def response_timeout(self) -> list[Event]:
        if self._expect is None:
            return []
        # An incomplete frame will not be completed now; a good frame it hid
        # may even be the answer (see the framer's flush).
        events = self._take(self._decoder.flush())
        if self._expect is None:
            return events
        expect, self._expect = self._expect, None
        self._counts["timeouts"] += 1
        return events + self._no_answer(expect)

    def _take(self, items: list[Any]) -> list[Event]:
        events: list[Event] = []
        for item in items:
            if isinstance(item, ProtocolError):
                events.append(item)
            else:
                self._counts["frames_rx"] += 1
                events.extend(self._on_frame(item))
        return events

    def _on_frame(self, frame: Any) -> list[Event]:
        """The events of one good frame (its own or ``unexpected``)."""
        raise NotImplementedError

    def _no_answer(self, expect: Any) -> list[Event]:
        """The deadline passed with no answer to ``expect`` (no longer
        awaited): the timeout error, a retry, a pump gone offline …"""
        raise NotImplementedError


class Linked(Protocol):
    """A pump's link as its master keeps it: None until its first answer."""

    online: bool | None
    misses: int


@dataclass
class Link:
    """A :class:`Linked` of its own, for a master with one pump (Furen)."""

    online: bool | None = None
    misses: int = 0


def link_up(pump: Linked, address: int) -> list[Event]:
    """``pump`` answered: its misses start again; ``PumpLink(online=True)``
    when it was not online."""
    pump.misses = 0
    if pump.online is True:
        return []
    pump.online = True
    return [PumpLink(address, online=True)]


def link_down(pump: Linked, address: int, offline_after: int) -> list[Event]:
    """``pump`` left a request unanswered: ``PumpLink(online=False)`` when
    that makes ``offline_after`` in a row and it was not offline already."""
    pump.misses += 1
    if pump.misses < offline_after or pump.online is False:
        return []
    pump.online = False
    return [PumpLink(address, online=False)]


def answered(
    online: MutableMapping[int, bool | None], misses: MutableMapping[int, int], address: int
) -> list[Event]:
    """:func:`link_up` for a master that keeps its pumps' links by address
    (``online`` may lack a pump that never answered)."""
    misses[address] = 0
    if online.get(address) is True:
        return []
    online[address] = True
    return [PumpLink(address, online=True)]


def missed(
    online: MutableMapping[int, bool | None],
    misses: MutableMapping[int, int],
    address: int,
    offline_after: int,
) -> list[Event]:
    """:func:`link_down` for a master that keeps its pumps' links by address."""
    misses[address] += 1
    if misses[address] < offline_after or online.get(address) is False:
        return []
    online[address] = False
    return [PumpLink(address, online=False)]


def at_least_one(**counts: int) -> None:
    """A driver's counts (``offline_after``, ``totals_every`` …) are 1 or
    more: ValueError names those that are not."""
    low = [name for name, count in counts.items() if count < 1]
    if low:
        raise ValueError(f"{' and '.join(low)} must be at least 1")
