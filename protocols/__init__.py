"""Field protocols, sans-IO: bytes in → events out; requests → bytes.

Nothing in this package imports asyncio or serial. The registry below maps a
config's ``protocol`` name to its driver and imports the driver's module only
when a config uses it (the python-can pattern). Third parties add drivers
through the ``forecourt.protocols`` entry-point group.
"""

from __future__ import annotations

import importlib
from functools import cache
from typing import Any

#: protocol name → (module, class). Imported on first use only.
BUILTIN_DRIVERS: dict[str, tuple[str, str]] = {
    "sinopec": ("protocols.sinopec.driver", "SinopecPoller"),
    "dart": ("protocols.dart.driver", "DartPoller"),
    "gilbarco": ("protocols.gilbarco.driver", "GilbarcoPoller"),
}

#: protocol name → module with ``describe(data: bytes) -> list[dict]`` for
#: ``forecourt decode``: every frame found in a capture, or why it was rejected.
BUILTIN_DESCRIBERS: dict[str, str] = {
    "sinopec": "protocols.sinopec.describe",
    "dart": "protocols.dart.describe",
    "gilbarco": "protocols.gilbarco.describe",
    "tls": "protocols.tls.describe",
}

#: protocol name → (module, class) of its passive monitor, for port modes
#: ``relay`` and ``listen`` (the POS is master; the collector only watches).
#: A protocol without one can only be polled.
BUILTIN_MONITORS: dict[str, tuple[str, str]] = {
    "sinopec": ("protocols.sinopec.monitor", "SinopecMonitor"),
}

#: Monitors that can also read a half-duplex bus carrying both directions
#: (``listen``): their frames say which side sent them.
BUS_MONITORS = frozenset({"sinopec"})

ENTRY_POINT_GROUP = "forecourt.protocols"


class UnknownProtocol(LookupError):
    pass


def _entry_points() -> Any:
    # importlib.metadata (zipfile, csv, email parsing: ≈ 0.7 MB, 10 ms) only
    # when a config names a protocol that is not built in.
    from importlib.metadata import entry_points

    return entry_points(group=ENTRY_POINT_GROUP)


@cache
def _available() -> tuple[str, ...]:
    # Installed distributions do not change while a process runs; config
    # validation asks once per port (32 scans of site-packages otherwise).
    return tuple(sorted({*BUILTIN_DRIVERS, *(ep.name for ep in _entry_points())}))


def available() -> list[str]:
    """Every protocol name a config may use: built-ins and entry points."""
    return list(_available())


def load_driver(name: str) -> Any:
    """Return the driver class registered under ``name``, importing it now."""
    if name in BUILTIN_DRIVERS:
        module_name, class_name = BUILTIN_DRIVERS[name]
        return getattr(importlib.import_module(module_name), class_name)
    for ep in _entry_points():
        if ep.name == name:
            return ep.load()
    raise UnknownProtocol(f"unknown protocol {name!r}; known: {', '.join(available())}")


def describable() -> list[str]:
    return sorted(BUILTIN_DESCRIBERS)


def load_describer(name: str) -> Any:
    """The ``describe`` function of protocol ``name``, importing it now."""
    if name not in BUILTIN_DESCRIBERS:
        raise UnknownProtocol(f"unknown protocol {name!r}; known: {', '.join(describable())}")
    return importlib.import_module(BUILTIN_DESCRIBERS[name]).describe


def monitorable() -> list[str]:
    """Protocols that can be relayed or listened to (they have a monitor)."""
    return sorted(BUILTIN_MONITORS)


def load_monitor(name: str) -> Any:
    """The passive monitor class of protocol ``name``, importing it now."""
    if name not in BUILTIN_MONITORS:
        known = ", ".join(monitorable())
        raise UnknownProtocol(f"protocol {name!r} has no passive monitor; known: {known}")
    module_name, class_name = BUILTIN_MONITORS[name]
    return getattr(importlib.import_module(module_name), class_name)
