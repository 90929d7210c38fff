"""What one protocol package offers the collector, in one record.

Every dispenser protocol package ``protocols/<name>/`` exports ``DESCRIPTOR``,
a :class:`ProtocolDescriptor`, from its ``__init__`` — and nothing heavy:
the descriptor names its parts as ``"module:attribute"`` strings, imported
only when a config uses them (python-can's ``interfaces`` table). The
registry (:mod:`protocols`) is a list of those packages plus the
``forecourt.protocols`` entry points, so a new family touches its own
package and one line of that list.

The parts (each optional but ``describer``):

``driver``
    a :class:`protocols.base.PollDriver` class, constructed as
    ``Driver(addresses, **options)`` (plus ``clock=`` when its signature
    takes one). None when the protocol cannot be polled read-only; then
    ``poll_refused`` says why (``config check`` repeats it).
``monitor``
    a passive interpreter for port modes ``relay`` and ``listen``:
    ``Monitor(addresses)`` (plus those of the protocol's options its
    signature names, and ``clock=`` when it takes one: a protocol whose sales
    carry no time stamps them), with ``receive_request(bytes)`` (POS → pump),
    ``receive_response(bytes)`` (pump → POS), ``counters``,
    ``foreign_addresses`` and, when ``bus_monitor``, ``receive_bus(bytes)``
    for one line carrying both directions.
``describer``
    ``describe(data: bytes) -> list[dict]`` for ``forecourt decode``.
``options``
    a stdlib dataclass of the driver's keyword options (bounds as
    ``annotated_types`` metadata); ``config`` validates the port's
    ``[ports.<name>]`` table against it. None: the driver takes none.
    Validation is strict like every config key (unknown keys are errors,
    nothing is coerced; TOML table keys are text, so a map keyed by nozzle
    number has ``str`` keys); ``__post_init__`` may raise ValueError for a
    cross-field rule, reported at the table. The driver gets the fields as
    keyword arguments; the daemon receives their values, never the module
    (which may import annotated_types, never pydantic).
``census``
    ``census(data: bytes) -> Census``: what a stretch of line bytes says
    about this protocol (valid frames, framing errors, addresses, which
    side sent them). Line checks and ``forecourt detect`` judge a line by
    it; it never counts a frame whose checksum failed, nor one cut by the
    end of ``data``.
``responder``
    the ``hil/dispenser`` simulator's wire half for this protocol
    (a ``hil.dispenser.responder.Responder`` class). Named here as text
    only: ``protocols`` never imports ``hil``.

A built-in family builds its descriptor with :func:`family`, which spells
its parts from its name by the tree's one convention (``<Name>`` is the
name capitalised, ``Ck1313`` for ``ck1313``): ``protocols.<name>.driver:<Name>Poller``,
``protocols.<name>.monitor:<Name>Monitor``, ``protocols.<name>.describe:describe``,
``protocols.<name>.census:census``, ``protocols.<name>.options:<Name>Options``
and ``hil.dispenser.<name>:<Name>Responder`` — no driver when the family says
why poll is refused. The package says only its facts.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Literal, TypedDict, Unpack

Parity = Literal["N", "E", "O"]


@dataclass(frozen=True, slots=True)
class LineSetting:
    """One serial setting a protocol is seen at in the field."""

    baudrate: int
    parity: Parity
    bytesize: Literal[7, 8] = 8
    stopbits: Literal[1, 2] = 1

    def __str__(self) -> str:
        return f"{self.baudrate} {self.bytesize}{self.parity}{self.stopbits}"


@dataclass(frozen=True, slots=True)
class Census:
    """What one stretch of line bytes says about one protocol.

    ``good_frames`` passed the protocol's checksum and layout;
    ``bad_frames`` are framing errors (bad checksum, bad length, garbage
    runs counted once each). ``addresses`` are pump addresses named by good
    frames; ``master_frames`` / ``pump_frames`` split the good frames by the
    side that sent them where the protocol tells (else both 0).
    """

    good_frames: int = 0
    bad_frames: int = 0
    addresses: frozenset[int] = frozenset()
    master_frames: int = 0
    pump_frames: int = 0
    #: A short human summary of what was seen (first frames decoded).
    evidence: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ProtocolDescriptor:
    """One protocol's parts; see the module docstring for each one's contract."""

    name: str
    #: Human title, with the brand family: "Sinopec 卡机联动 V1.1".
    title: str
    describer: str
    driver: str | None = None
    monitor: str | None = None
    bus_monitor: bool = False
    options: str | None = None
    census: str | None = None
    responder: str | None = None
    #: Field line settings, the most common first; the first is the default.
    line_settings: tuple[LineSetting, ...] = ()
    #: Quiet time before the next step of an exchange, ms.
    inter_frame_gap_ms: int = 10
    #: A pump's answer starts within this, ms, where a source says so (None:
    #: no source; ``forecourt detect`` waits its own default).
    reply_within_ms: int | None = None
    #: Bus addresses a pump may have on this protocol (inclusive).
    address_range: tuple[int, int] = (1, 99)
    #: Why port mode ``poll`` is refused (the driver would have to change
    #: the pump's state, SPEC D20); None when ``driver`` is given.
    poll_refused: str | None = None
    #: Where its facts come from, for docs/brands.md and the tests.
    sources: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        if self.driver is None and self.poll_refused is None and self.monitor is None:
            raise ValueError(f"protocol {self.name!r} has neither a driver nor a monitor")
        if self.bus_monitor and self.monitor is None:
            raise ValueError(f"protocol {self.name!r}: bus_monitor without a monitor")

    @property
    def default_line(self) -> LineSetting | None:
        return self.line_settings[0] if self.line_settings else None

    def load(self, part: str) -> Any:
        """Import and return one named part (``"driver"``, ``"monitor"`` …)."""
        target = getattr(self, part)
        if not isinstance(target, str):
            raise LookupError(f"protocol {self.name!r} has no {part}")
        return load_target(target)


def load_target(target: str) -> Any:
    """``"package.module:attribute"`` → the attribute, importing the module now."""
    module_name, _, attribute = target.partition(":")
    if not attribute:
        raise ValueError(f"{target!r} is not 'module:attribute'")
    value: Any = importlib.import_module(module_name)
    for name in attribute.split("."):
        value = getattr(value, name)
    return value


class Facts(TypedDict, total=False):
    """What a built-in family says of itself beyond its name and title: the
    :class:`ProtocolDescriptor` fields of the same names, passed on as they are."""

    line_settings: tuple[LineSetting, ...]
    inter_frame_gap_ms: int
    reply_within_ms: int | None
    address_range: tuple[int, int]
    poll_refused: str | None
    sources: tuple[str, ...]


def family(
    name: str, title: str, *, bus_monitor: bool, **facts: Unpack[Facts]
) -> ProtocolDescriptor:
    """The descriptor of built-in package ``protocols/<name>/``, its parts
    named by the tree's convention (module docstring); a family that gives
    ``poll_refused`` has no driver. ``bus_monitor`` is every family's own
    judgement, so it is never left to a default."""
    kind = name.capitalize()
    package = f"protocols.{name}"
    return ProtocolDescriptor(
        name=name,
        title=title,
        describer=f"{package}.describe:describe",
        driver=None if facts.get("poll_refused") else f"{package}.driver:{kind}Poller",
        monitor=f"{package}.monitor:{kind}Monitor",
        bus_monitor=bus_monitor,
        options=f"{package}.options:{kind}Options",
        census=f"{package}.census:census",
        responder=f"hil.dispenser.{name}:{kind}Responder",
        **facts,
    )
