"""A test double of libgpiod's Python binding (PyPI ``gpiod`` 2.x) for the
simulated chips of :mod:`hil.gpio_double.chip`.

The collector imports ``gpiod`` and uses ``request_lines``, ``LineSettings``,
``gpiod.line``'s enums, ``EdgeEvent`` and a ``LineRequest``'s ``fd``,
``read_edge_events``, ``wait_edge_events``, ``get_values`` and ``release``.
This package has those names with the binding's signatures, defaults and
exceptions (a missing chip: FileNotFoundError; a path that is no chip:
OSError ENOTTY; a line taken: OSError EBUSY), so the collector's code cannot
tell it from the real one; tests/test_gpio_inputs.py checks that against
the real binding where it is installed. :func:`shim` makes a directory
that, first on a process's ``PYTHONPATH``, makes ``import gpiod`` this.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import select
import socket
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from enum import Enum
from pathlib import Path
from types import TracebackType
from typing import Any

from hil.gpio_double import line
from hil.gpio_double.chip import EVENT
from hil.gpio_double.line import Bias, Clock, Direction, Drive, Edge, Value

__all__ = [
    "EdgeEvent",
    "LineRequest",
    "LineSettings",
    "RequestReleasedError",
    "__version__",
    "api_version",
    "is_gpiochip_device",
    "line",
    "request_lines",
]

__version__ = "2.5.0"  # the binding's API this double follows
api_version = "2.3"

#: libgpiod's default edge-event buffer: events read at most per call.
READ_EVENTS_DEFAULT = 64


class RequestReleasedError(Exception):
    def __init__(self) -> None:
        super().__init__("GPIO lines have been released")


@dataclass(repr=False)
class LineSettings:
    direction: Direction = Direction.AS_IS
    edge_detection: Edge = Edge.NONE
    bias: Bias = Bias.AS_IS
    drive: Drive = Drive.PUSH_PULL
    active_low: bool = False
    debounce_period: timedelta = timedelta()
    event_clock: Clock = Clock.MONOTONIC
    output_value: Value = Value.INACTIVE


@dataclass(frozen=True, init=False, repr=False)
class EdgeEvent:
    class Type(Enum):
        RISING_EDGE = 1
        FALLING_EDGE = 2

    event_type: Type
    timestamp_ns: int
    line_offset: int
    global_seqno: int
    line_seqno: int

    def __init__(
        self,
        event_type: int,
        timestamp_ns: int,
        line_offset: int,
        global_seqno: int,
        line_seqno: int,
    ) -> None:
        object.__setattr__(self, "event_type", EdgeEvent.Type(event_type))
        object.__setattr__(self, "timestamp_ns", timestamp_ns)
        object.__setattr__(self, "line_offset", line_offset)
        object.__setattr__(self, "global_seqno", global_seqno)
        object.__setattr__(self, "line_seqno", line_seqno)


_EDGES = {Edge.NONE: "none", Edge.RISING: "rising", Edge.FALLING: "falling", Edge.BOTH: "both"}


def _connect(path: str) -> socket.socket:
    """The chip's socket, or the error opening a /dev/gpiochipN would give."""
    mode = os.stat(path).st_mode  # FileNotFoundError, as the binding raises it
    if not stat.S_ISSOCK(mode):  # the binding's chip ioctl on a file: ENOTTY
        raise OSError(errno.ENOTTY, os.strerror(errno.ENOTTY))
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(path)
    except ConnectionRefusedError:  # a chip whose server is gone
        conn.close()
        raise OSError(errno.ENODEV, os.strerror(errno.ENODEV)) from None
    return conn


def _reply(conn: socket.socket) -> dict[str, Any]:
    """One JSON line, read a byte at a time: events may follow it at once."""
    data = bytearray()
    while not data.endswith(b"\n"):
        byte = conn.recv(1)
        if not byte:
            raise OSError(errno.ENODEV, os.strerror(errno.ENODEV))
        data += byte
    body: dict[str, Any] = json.loads(data)
    if "errno" in body:
        raise OSError(int(body["errno"]), str(body.get("error", "")))
    return body


class LineRequest:
    def __init__(self, path: str, conn: socket.socket, settings: dict[int, LineSettings]) -> None:
        self._path = path
        self._conn: socket.socket | None = conn
        self._settings = settings
        self._partial = bytearray()

    def __bool__(self) -> bool:
        return self._conn is not None

    def __enter__(self) -> LineRequest:
        self._check_released()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()

    def _check_released(self) -> socket.socket:
        if self._conn is None:
            raise RequestReleasedError()
        return self._conn

    def release(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def get_value(self, line: int | str) -> Value:
        return self.get_values([line])[0]

    def get_values(self, lines: Iterable[int | str] | None = None) -> list[Value]:
        self._check_released()
        offsets = [int(o) for o in (lines or self._settings)]
        conn = _connect(self._path)
        with conn:
            conn.sendall(json.dumps({"op": "values", "offsets": offsets}).encode() + b"\n")
            levels = _reply(conn)["values"]
        return [
            Value.ACTIVE if bool(level) != self._settings[o].active_low else Value.INACTIVE
            for o, level in zip(offsets, levels, strict=True)
        ]

    def wait_edge_events(self, timeout: timedelta | float | None = None) -> bool:
        conn = self._check_released()
        if isinstance(timeout, timedelta):
            timeout = timeout.total_seconds()
        if len(self._partial) >= EVENT.size:
            return True
        ready, _, _ = select.select([conn], [], [], timeout)
        return bool(ready)

    def read_edge_events(self, max_events: int | None = None) -> list[EdgeEvent]:
        """At least one event (blocking until there is), at most ``max_events``."""
        conn = self._check_released()
        limit = max_events or READ_EVENTS_DEFAULT
        while len(self._partial) < EVENT.size:
            chunk = conn.recv(limit * EVENT.size - len(self._partial))
            if not chunk:
                raise OSError(errno.ENODEV, os.strerror(errno.ENODEV))
            self._partial += chunk
        whole = min(len(self._partial) // EVENT.size, limit) * EVENT.size
        data, self._partial = bytes(self._partial[:whole]), self._partial[whole:]
        return [EdgeEvent(kind, ts, offset, seq, line_seq) for ts, kind, offset, seq, line_seq
                in EVENT.iter_unpack(data)]  # fmt: skip

    def fileno(self) -> int:
        return self.fd

    @property
    def fd(self) -> int:
        return self._check_released().fileno()

    @property
    def offsets(self) -> list[int]:
        self._check_released()
        return list(self._settings)

    @property
    def lines(self) -> list[int | str]:
        self._check_released()
        return list(self._settings)

    @property
    def num_lines(self) -> int:
        return len(self.offsets)

    @property
    def chip_name(self) -> str:
        self._check_released()
        return Path(self._path).name


def _offsets(key: Iterable[int | str] | int | str) -> list[int]:
    if isinstance(key, int):
        return [key]
    if isinstance(key, str):
        raise ValueError("line names are not supported by the double")
    return [int(k) for k in key]


def request_lines(
    path: str,
    config: dict[Iterable[int | str] | int | str, LineSettings | None],
    consumer: str | None = None,
    event_buffer_size: int | None = None,
    output_values: dict[int | str, Value] | None = None,
) -> LineRequest:
    settings: dict[int, LineSettings] = {}
    for key, value in config.items():
        for offset in _offsets(key):
            settings[offset] = value or LineSettings()
    lines = {
        str(offset): {
            "edge": _EDGES[s.edge_detection],
            "active_low": s.active_low,
            "realtime": s.event_clock == Clock.REALTIME,
        }
        for offset, s in settings.items()
    }
    conn = _connect(path)
    try:
        message: dict[str, Any] = {"op": "request", "consumer": consumer, "lines": lines}
        message["event_buffer_size"] = event_buffer_size
        conn.sendall(json.dumps(message).encode() + b"\n")
        _reply(conn)
    except BaseException:
        conn.close()
        raise
    return LineRequest(path, conn, settings)


def is_gpiochip_device(path: str) -> bool:
    with contextlib.suppress(OSError):
        return stat.S_ISSOCK(os.stat(path).st_mode)
    return False


def shim(directory: Path) -> Path:
    """``directory`` holding a ``gpiod`` package that is this double; put it
    first on a process's PYTHONPATH and its ``import gpiod`` gets the double."""
    package = directory / "gpiod"
    package.mkdir(parents=True, exist_ok=True)
    (package / "__init__.py").write_text(
        "# The collector's GPIO binding replaced by the test double (hil/gpio_double).\n"
        "from hil.gpio_double import *  # noqa: F403\n"
        "from hil.gpio_double import __version__, api_version, line  # noqa: F401\n"
    )
    return directory
