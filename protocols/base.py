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

Read-only (SPEC D20): every driver declares ``ALLOWED_COMMANDS``, the only
command codes it may ever put on the wire, and checks each request against
it before returning it. A test drives every driver with arbitrary input and
proves nothing else leaves it.
"""

from __future__ import annotations

from typing import ClassVar, Protocol

from protocols.events import Event, Sale


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
