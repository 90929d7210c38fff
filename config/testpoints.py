"""Test points: the two moments a kill matters most, made visible to a test.

- ``order_committed``: an order is committed and its confirmation not yet
  handed to the dispenser's driver (a kill here: the dispenser offers the
  sale again and the store must recognise it);
- ``batch_acked``: the broker acknowledged a batch (PUBACK) and the store has
  not yet marked it sent (a kill here: the batch goes again and the platform
  must deduplicate it).

Off unless ``FORECOURT_TESTPOINTS`` is set at start; then :data:`active` is
True and the call sites (``if testpoints.active: testpoints.reached(...)``)
cost one attribute test when off. The variable holds ``;``-separated items:

- ``trace=PATH``: per point, how often it was reached and passed, as
  little-endian uint32 pairs in a file mapped shared (:data:`POINTS` order).
  The page cache keeps what a SIGKILLed process wrote there, so the harness
  reads afterwards whether the kill fell inside a window (reached > passed).
- ``stop=POINT[:KIND][@N]``: the N-th time (default 1) POINT is reached (for
  ``batch_acked``, with a batch of KIND), write one JSON line
  ``{"event": "testpoint_stop", ...}`` to stderr and SIGSTOP this process:
  the harness finds it stopped exactly inside the window and kills it there.

For tests only (hil/torture.py); standard library, no project imports.
"""

from __future__ import annotations

import json
import mmap
import os
import signal
import struct
import sys

ENV = "FORECOURT_TESTPOINTS"
POINTS = ("order_committed", "batch_acked")
_SLOT = struct.Struct("<II")  # reached, passed

_spec = os.environ.get(ENV, "")
#: True when the daemon was started with test points on.
active = bool(_spec)

_trace: mmap.mmap | None = None
_stop: tuple[str, str | None, int] | None = None
_matched = 0  # arrivals that matched the stop item so far


def _configure(spec: str) -> None:
    global _trace, _stop
    for item in filter(None, spec.split(";")):
        key, _, value = item.partition("=")
        if key == "trace":
            fd = os.open(value, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                os.ftruncate(fd, _SLOT.size * len(POINTS))
                _trace = mmap.mmap(fd, _SLOT.size * len(POINTS))
            finally:
                os.close(fd)
        elif key == "stop":
            where, _, nth = value.partition("@")
            point, _, kind = where.partition(":")
            if point not in POINTS:
                raise ValueError(f"{ENV}: no test point {point!r} (known: {', '.join(POINTS)})")
            _stop = (point, kind or None, int(nth or 1))
        else:
            raise ValueError(f"{ENV}: unknown item {item!r}")


def _count(point: str, field: int) -> None:
    if _trace is None:
        return
    offset = _SLOT.size * POINTS.index(point)
    values = list(_SLOT.unpack_from(_trace, offset))
    values[field] += 1
    _SLOT.pack_into(_trace, offset, *values)


def reached(point: str, kind: str | None = None) -> None:
    """Entering ``point``'s window (``kind``: what the batch carries)."""
    global _matched
    _count(point, 0)
    if _stop is None or _stop[0] != point or _stop[1] not in (None, kind):
        return
    _matched += 1
    if _matched == _stop[2]:
        line = {"event": "testpoint_stop", "point": point, "kind": kind, "pid": os.getpid()}
        print(json.dumps(line), file=sys.stderr, flush=True)
        os.kill(os.getpid(), signal.SIGSTOP)


def passed(point: str) -> None:
    """Leaving ``point``'s window."""
    _count(point, 1)


def read_trace(path: str | os.PathLike[str]) -> dict[str, tuple[int, int]]:
    """What a (killed) process traced: point → (reached, passed); nothing when
    it died before it imported this module."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raw = b""
    raw = raw.ljust(_SLOT.size * len(POINTS), b"\0")
    return {point: _SLOT.unpack_from(raw, _SLOT.size * i) for i, point in enumerate(POINTS)}


if active:
    _configure(_spec)
