"""Raw-frame capture for ``forecourt capture PORT``.

Every port task (poll, relay, listen) calls :func:`feed` on every write and
read. When nobody captures, that costs one dict lookup (``_taps`` is empty),
plus the raw log's append when it is on (collector/station/evidence.py). A capture
registers a bounded list for one port, the control socket drains it after N
seconds and describes each frame with the port's protocol describer.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

#: Frames kept per capture: a 32-port gateway polling every 30 ms writes and
#: reads ~66 chunks a second per port; 10 minutes of that is ~40 000. Past
#: the bound the capture counts what it dropped instead of growing.
MAX_FRAMES = 20_000


@dataclass(slots=True)
class Tap:
    frames: list[tuple[float, str, bytes]] = field(default_factory=list)
    dropped: int = 0


#: port number → active taps (several technicians may capture one port).
_taps: dict[int, list[Tap]] = {}

#: The raw log's recorder (collector/station/evidence.py), when the daemon keeps one:
#: every chunk of every line, handed to a bounded buffer.
evidence: Callable[[int, str, bytes], None] | None = None


def feed(port: int, direction: str, data: bytes) -> None:
    """Record ``data`` sent (``"tx"``), received (``"rx"``) or tapped
    (``"bus"``) on ``port``: to the raw log, and to any capture running."""
    if evidence is not None:
        evidence(port, direction, data)
    taps = _taps.get(port)
    if taps is None:
        return
    now = time.time()
    for tap in taps:
        if len(tap.frames) < MAX_FRAMES:
            tap.frames.append((now, direction, bytes(data)))
        else:
            tap.dropped += 1


def start(port: int) -> Tap:
    tap = Tap()
    _taps.setdefault(port, []).append(tap)
    return tap


def stop(port: int, tap: Tap) -> None:
    taps = _taps.get(port, [])
    if tap in taps:
        taps.remove(tap)
    if not taps:
        _taps.pop(port, None)
