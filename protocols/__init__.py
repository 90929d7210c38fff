"""Field protocols, sans-IO: bytes in → events out; requests → bytes.

Nothing in this package imports asyncio or serial. Each dispenser protocol
is a package that exports one :class:`~protocols.descriptor.ProtocolDescriptor`
(``DESCRIPTOR``): driver, monitor, describer, options, line settings,
census, simulator. The registry below is the list of those packages,
imported when first asked (python-can's ``interfaces`` table); the parts a
descriptor names are imported only when a config uses them. Third parties
add protocols through the ``forecourt.protocols`` entry-point group: each
entry point names a ``ProtocolDescriptor`` (``name = "pkg.module:DESCRIPTOR"``).

The bottom layer with records/: may import records/ only, never config/,
buffer/, uplink/ or collector/ (tests/test_layers.py).
"""

from __future__ import annotations

import importlib
from functools import cache
from typing import Any

from protocols.descriptor import LineSetting, ProtocolDescriptor

__all__ = [
    "LineSetting",
    "ProtocolDescriptor",
    "UnknownProtocol",
    "available",
    "describable",
    "descriptor",
    "descriptors",
    "load_describer",
    "load_driver",
    "load_monitor",
    "monitorable",
]

#: The built-in dispenser protocol packages, one line each. Each exports
#: ``DESCRIPTOR`` from its ``__init__`` (light: names, not imports).
BUILTIN_PACKAGES: tuple[str, ...] = (
    "protocols.sinopec",
    "protocols.dart",
    "protocols.gilbarco",
    "protocols.furen",
    "protocols.udc",
    "protocols.censtar",
    "protocols.ck1313",
    "protocols.lanfeng",
    "protocols.uninfo",
)

#: Describers of protocols that are not dispensers (the tank gauge), for
#: ``forecourt decode``.
OTHER_DESCRIBERS: dict[str, str] = {"tls": "protocols.tls.describe:describe"}

ENTRY_POINT_GROUP = "forecourt.protocols"


class UnknownProtocol(LookupError):
    pass


def _entry_points() -> Any:
    # importlib.metadata (zipfile, csv, email parsing: ≈ 0.7 MB, 10 ms) only
    # when a config names a protocol that is not built in.
    from importlib.metadata import entry_points

    return entry_points(group=ENTRY_POINT_GROUP)


@cache
def _builtin() -> dict[str, ProtocolDescriptor]:
    table: dict[str, ProtocolDescriptor] = {}
    for package in BUILTIN_PACKAGES:
        found = importlib.import_module(package).DESCRIPTOR
        if not isinstance(found, ProtocolDescriptor):
            raise TypeError(f"{package}.DESCRIPTOR is not a ProtocolDescriptor")
        table[found.name] = found
    return table


@cache
def _third_party() -> dict[str, ProtocolDescriptor]:
    # Installed distributions do not change while a process runs.
    table: dict[str, ProtocolDescriptor] = {}
    for ep in _entry_points():
        if ep.name in _builtin():
            continue  # a built-in name is never replaced from outside
        found = ep.load()
        if not isinstance(found, ProtocolDescriptor):
            raise TypeError(f"entry point {ep.name!r} ({ep.value}) is not a ProtocolDescriptor")
        if found.name != ep.name:
            raise ValueError(f"entry point {ep.name!r} names protocol {found.name!r}")
        table[found.name] = found
    return table


def descriptor(name: str) -> ProtocolDescriptor:
    """The descriptor of protocol ``name``: built in, else from an entry point."""
    found = _builtin().get(name) or _third_party().get(name)
    if found is None:
        raise UnknownProtocol(f"unknown protocol {name!r}; known: {', '.join(available())}")
    return found


def descriptors() -> list[ProtocolDescriptor]:
    """Every dispenser protocol: built-ins first, then entry points, by name."""
    return [*_builtin().values(), *sorted(_third_party().values(), key=lambda d: d.name)]


def available() -> list[str]:
    """Every protocol name a config may use: built-ins and entry points."""
    return sorted(d.name for d in descriptors())


def load_driver(name: str) -> Any:
    """The poll driver class of protocol ``name``, importing it now."""
    found = descriptor(name)
    if found.driver is None:
        raise UnknownProtocol(f"protocol {name!r} cannot be polled: {found.poll_refused}")
    return found.load("driver")


def describable() -> list[str]:
    """Every name ``forecourt decode`` knows: dispenser protocols (built in and
    from entry points) and the others (the tank gauge)."""
    return sorted({*(d.name for d in descriptors()), *OTHER_DESCRIBERS})


def load_describer(name: str) -> Any:
    """The ``describe`` function of protocol ``name``, importing it now."""
    if name in OTHER_DESCRIBERS:
        from protocols.descriptor import load_target

        return load_target(OTHER_DESCRIBERS[name])
    try:
        return descriptor(name).load("describer")
    except UnknownProtocol:
        raise UnknownProtocol(
            f"unknown protocol {name!r}; known: {', '.join(describable())}"
        ) from None


def monitorable() -> list[str]:
    """Protocols that can be relayed or listened to (they have a monitor)."""
    return sorted(d.name for d in descriptors() if d.monitor is not None)


def bus_monitors() -> frozenset[str]:
    """Monitors that can also read one line carrying both directions (``listen``)."""
    return frozenset(d.name for d in descriptors() if d.bus_monitor)


def load_monitor(name: str) -> Any:
    """The passive monitor class of protocol ``name``, importing it now."""
    found = descriptor(name)
    if found.monitor is None:
        known = ", ".join(monitorable())
        raise UnknownProtocol(f"protocol {name!r} has no passive monitor; known: {known}")
    return found.load("monitor")
