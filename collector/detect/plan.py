"""What detect tries, in which order, and the only bytes it may send (pure).

**Line settings.** The brand table is the union of every family's
``line_settings`` (protocols/descriptor.py). Settings one UART cannot tell
apart (rates within :data:`SAME_RATE`, the same parity and data bits: a
5760 UART reads a 5787 line, protocols.md §4) are one line class, tried
once. Classes are ordered by how common they are: each family lists its
settings most common first, so a setting scores ``1 / (1 + rank)`` per
family listing it, summed; ties keep the registry's order.

**Probes.** A probe is the first request of a *fresh* driver built for one
address (``Driver([address])``, the protocol's default options): the
driver checks every request against its ``ALLOWED_COMMANDS`` before it
returns it (protocols/base.py), so what detect can send is exactly what
that family's read-only poller sends first, to that address, and nothing
of its own making (SPEC D20). :class:`Probe` objects come only from
:func:`probe_for`; the line writes nothing else (collector/detect/line.py).

**Order of the probes.** Families whose status query is a single byte
(no frame, no check: any byte that reaches such a pump is a command to it)
are probed first, at each of their settings, before any framed family's
frame goes out: a pump of such a family on the line then hears its own
family's status queries before anything else. Then the framed families'
first :data:`FIRST_ADDRESSES` addresses, in rounds: every family at its
most common setting, then every family at its second, and so on (within a
round, line classes by commonness); then the rest of their ranges, in the
same rounds.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from protocols.descriptor import LineSetting, ProtocolDescriptor

#: Relative rate difference a UART absorbs (mid-bit sampling drifts half a
#: bit over ~10 bits at 5 %): 5760 and 5787 are one line.
SAME_RATE = 0.02


def same_line(a: LineSetting, b: LineSetting) -> bool:
    """Whether a UART at ``a`` reads a line at ``b`` (and back)."""
    return (
        abs(a.baudrate / b.baudrate - 1) <= SAME_RATE
        and a.parity == b.parity
        and a.bytesize == b.bytesize
    )


@dataclass(frozen=True, slots=True)
class LineClass:
    """Settings a UART cannot tell apart; ``setting`` is the one the line is
    opened at (the most common of them)."""

    setting: LineSetting
    members: tuple[LineSetting, ...]

    def own_setting(self, family: ProtocolDescriptor) -> LineSetting:
        """The family's own listed setting in this class (what its stanza says)."""
        for listed in family.line_settings:
            if any(listed == m for m in self.members):
                return listed
        return self.setting

    def serves(self, family: ProtocolDescriptor) -> bool:
        return any(s in self.members for s in family.line_settings)


def line_classes(families: Sequence[ProtocolDescriptor]) -> list[LineClass]:
    """The brand table's settings as line classes, most common first."""
    score: dict[LineSetting, float] = {}
    for family in families:
        for rank, setting in enumerate(family.line_settings):
            score[setting] = score.get(setting, 0.0) + 1.0 / (1 + rank)
    ordered = sorted(score, key=lambda s: -score[s])  # stable: registry order on ties
    classes: list[list[LineSetting]] = []
    for setting in ordered:
        home = next((c for c in classes if same_line(c[0], setting)), None)
        if home is None:
            classes.append([setting])
        else:
            home.append(setting)
    return [LineClass(members[0], tuple(members)) for members in classes]


@dataclass(frozen=True, slots=True)
class Probe:
    """One family's read-only status query to one address, and the driver
    that made it (its own parser judges the answer)."""

    family: ProtocolDescriptor
    address: int
    request: bytes
    driver: Any = field(compare=False, repr=False)


class NoProbe(LookupError):
    """The family has no driver (it can only be recognised while its master polls)."""


def probe_for(family: ProtocolDescriptor, address: int) -> Probe:
    """The first request of a fresh driver of ``family`` for ``address``."""
    if family.driver is None:
        raise NoProbe(f"{family.name}: {family.poll_refused}")
    driver = family.load("driver")([address])
    request = driver.next_request()
    if not request:
        raise NoProbe(f"{family.name}: its driver has no first request")
    return Probe(family, address, bytes(request), driver)


def addresses(family: ProtocolDescriptor) -> range:
    low, high = family.address_range
    return range(low, high + 1)


def single_byte(family: ProtocolDescriptor) -> bool:
    """Whether the family's status query is one byte: no frame, no check."""
    low = family.address_range[0]
    return len(probe_for(family, low).request) == 1


#: Addresses asked first, at every setting, before the rest of any range:
#: a station numbers its pumps from 1, so most lines answer here.
FIRST_ADDRESSES = 8


@dataclass(frozen=True, slots=True)
class Step:
    """Probe ``family`` at ``addresses``, the line at ``line``."""

    line: LineClass
    family: ProtocolDescriptor
    addresses: range


def probe_steps(families: Iterable[ProtocolDescriptor]) -> list[Step]:
    """Every (line class, family with a driver, addresses) to probe, in order
    (module doc): a framed family's first :data:`FIRST_ADDRESSES` at every one
    of its settings before the rest of its range at any."""
    pollable = [f for f in families if f.driver is not None]
    classes = line_classes(pollable)
    keyed: list[tuple[tuple[int, int, int, int], Step]] = []
    for line in classes:
        for family in pollable:
            if not line.serves(family):
                continue
            own = family.line_settings.index(line.own_setting(family))
            span = addresses(family)
            if single_byte(family):
                keyed.append(((0, 0, own, classes.index(line)), Step(line, family, span)))
                continue
            first, rest = span[:FIRST_ADDRESSES], span[FIRST_ADDRESSES:]
            keyed.append(((1, 0, own, classes.index(line)), Step(line, family, first)))
            if rest:
                keyed.append(((1, 1, own, classes.index(line)), Step(line, family, rest)))
    return [step for _, step in sorted(keyed, key=lambda item: item[0])]
