"""Self-check of each dispenser line (SPEC F1): cut, or re-wired to something else.

Two port-level alarms, states raised and cleared once per episode (source
``pNN``), from counters the ports and their framers already keep — one
sample per port per :data:`TICK_S`, nothing on the byte path but an integer
add per read:

- ``LINE_SILENT`` — no byte from the dispenser side for
  ``line_silent_after_s`` on a line that carried traffic since the start
  (a line that never had any is not alarmed: a port wired for a dispenser
  not yet installed stays quiet, and a dead pump on it is NOZZLE_OFFLINE
  anyway). Poll: the pumps' answers (the collector keeps asking); relay:
  the dispenser side (``detail.pos_bytes`` says whether the POS still
  asks); listen: the whole bus. Cleared by the first bytes back. While the
  port itself is offline (PORT_OFFLINE) the silence clock does not run.
- ``LINE_REWIRED`` — over a window of ``line_rewired_after_s`` one of:
  *protocol*: at least :data:`REWIRED_MIN_BYTES` arrived and at least
  :data:`REWIRED_MIN_ERRORS` framing errors, but good frames are at most
  :data:`REWIRED_MAX_GOOD_SHARE` of what the framer found (another
  protocol's bytes: its CRCs pass 1 time in 65536); *address* (relay and
  listen, whose monitor sees every frame on the line): at least
  :data:`REWIRED_MIN_FOREIGN` frames of pumps not configured and none of
  the configured ones. Cleared once neither holds over the window and the
  expected traffic is back (frames of a configured pump, or on a poll port
  good frames).

A noisy but correct line does not alarm: at 1 % of bytes hit, most frames
still pass their CRC (tests/test_line_checks.py). A poll port wired to a
pump of another address or protocol gets no answer at all (a pump only
answers its own address, in its own protocol), which is NOZZLE_OFFLINE and,
once it had traffic, LINE_SILENT — the collector never probes other
addresses or protocols on a line it does not know (SPEC D20).

:class:`LineWatch` is pure (samples and times come in); :class:`LineCheckTask`
samples the ports and raises the alarms through each port's sink (store first).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import structlog

log = structlog.get_logger("collector.station.linecheck")

#: How often every port is sampled: alarms show within a second of their
#: threshold, and 32 ports cost 32 small dict reads per second.
TICK_S = 1.0

#: Default silence before LINE_SILENT, seconds (``line_silent_after_s``):
#: ten idle poll intervals of a poll port (1 s default), tens of POS poll
#: cycles on a relay; a pump's own offline detection (3 misses) comes first.
SILENT_AFTER_S = 10.0

#: Default window of the re-wired checks, seconds (``line_rewired_after_s``):
#: long enough that a burst of noise (a pump's motor starting) is a small
#: part of it, short enough that a cable moved during maintenance shows soon.
REWIRED_AFTER_S = 30.0

#: Bytes in a window before a protocol mismatch is judged: a handful of
#: frames' worth, so a few stray bytes on an idle line are never enough.
REWIRED_MIN_BYTES = 64

#: Framing errors in a window before a protocol mismatch is judged.
REWIRED_MIN_ERRORS = 5

#: Good frames' share (of good frames + framing errors) at or below which
#: the bytes are not this protocol. At 1 % of bytes hit ~85 % of a Sinopec
#: status answer's frames still pass; another protocol passes ~none.
REWIRED_MAX_GOOD_SHARE = 0.1

#: Frames of unconfigured pumps in a window before an address mismatch is
#: judged (with none of the configured pumps).
REWIRED_MIN_FOREIGN = 5

#: Error kinds that mean "these bytes are not frames of this protocol"
#: (the framers' and message decoders' kinds; protocols/*/framer.py).
FRAMING_ERRORS = frozenset(
    {"garbage", "bad_crc", "bad_length", "truncated", "bad_escape", "bad_lrc", "bad_message"}
    | {"bad_pair", "bad_xor"}  # UDC's complement pairs, Censtar's XOR
)

#: Counters of good frames, by the framers' convention (protocols/stream.py
#: ``OK_COUNTER``; a monitor prefixes its POS-side and bus decoders), and
#: Gilbarco's status replies: one byte outside any frame, most of an idle
#: Gilbarco line's traffic, so a noisy idle line is not judged on the few
#: data replies alone.
GOOD_FRAME_COUNTERS = ("frames", "pos_frames", "bus_frames", "status_rx")

SILENT_CODE = "LINE_SILENT"
REWIRED_CODE = "LINE_REWIRED"


@dataclass(frozen=True, slots=True)
class Sample:
    """Cumulative counters of one port at ``at`` (monotonic seconds)."""

    at: float
    online: bool  # the port's line is open
    rx_bytes: int  # from the dispenser side (listen: the bus)
    other_bytes: int  # from the POS side (relay), else 0
    good_frames: int
    bad_frames: int  # framing errors (FRAMING_ERRORS)
    own_frames: int | None = None  # frames of configured pumps (monitors only)
    foreign_frames: int | None = None
    foreign_addresses: tuple[int, ...] = ()  # addresses seen, not configured


#: (code, raised, detail)
Transition = tuple[str, bool, dict[str, Any]]


class LineWatch:
    """LINE_SILENT and LINE_REWIRED for one port, from its samples (pure)."""

    def __init__(
        self,
        *,
        protocol: str,
        addresses: Sequence[int],
        side: str = "dispenser",
        silent_after_s: float = SILENT_AFTER_S,
        rewired_after_s: float = REWIRED_AFTER_S,
        silent: bool = False,
        rewired: bool = False,
    ) -> None:
        """``silent`` / ``rewired``: the alarm's last stored state (a restart):
        cleared when the line shows otherwise, never raised twice."""
        self.protocol = protocol
        self.addresses = sorted(addresses)
        self.side = side  # where the silence is measured: "dispenser" or "bus" (listen)
        self.silent_after_s = silent_after_s
        self.rewired_after_s = rewired_after_s
        self.silent = silent
        self.rewired = rewired
        self._had_traffic = silent  # it was alarmed: it had traffic before the restart
        self._quiet_since: float | None = None  # when the last byte came (or the line reopened)
        self._last: Sample | None = None
        self._window: deque[Sample] = deque()

    def feed(self, sample: Sample) -> list[Transition]:
        last, self._last = self._last, sample
        if not sample.online:
            self._quiet_since = None  # PORT_OFFLINE says it; the clock restarts at reopen
            self._window.clear()
            return []
        out: list[Transition] = []
        out += self._silence(sample, last)
        out += self._rewired(sample)
        return out

    def undo(self, code: str, raised: bool) -> None:
        """A transition the store refused: back to the state before it, so the
        next sample that still shows it emits it again (nothing silently lost)."""
        if code == SILENT_CODE:
            self.silent = not raised
        elif code == REWIRED_CODE:
            self.rewired = not raised

    def _silence(self, sample: Sample, last: Sample | None) -> list[Transition]:
        moved = last is not None and sample.rx_bytes != last.rx_bytes
        if moved or self._quiet_since is None:
            self._quiet_since = sample.at
        if moved:
            self._had_traffic = True
            if self.silent:
                self.silent = False
                return [(SILENT_CODE, False, {"side": self.side})]
            return []
        quiet = sample.at - self._quiet_since
        if self.silent or not self._had_traffic or quiet < self.silent_after_s:
            return []
        self.silent = True
        detail: dict[str, Any] = {
            "side": self.side,
            "silent_s": f"{quiet:.1f}",  # decimal strings: the store refuses floats
            "threshold_s": f"{self.silent_after_s:g}",
        }
        if last is not None and sample.other_bytes != last.other_bytes:
            detail["pos_bytes"] = "flowing"  # the POS still asks: the dispenser's leg is cut
        return [(SILENT_CODE, True, detail)]

    def _rewired(self, sample: Sample) -> list[Transition]:
        window = self._window
        window.append(sample)
        horizon = sample.at - self.rewired_after_s
        while len(window) > 1 and window[1].at <= horizon:
            window.popleft()
        base = window[0]
        if base.at > horizon + TICK_S / 2:
            return []  # not a whole window yet
        d_bytes = sample.rx_bytes + sample.other_bytes - base.rx_bytes - base.other_bytes
        d_good = sample.good_frames - base.good_frames
        d_bad = sample.bad_frames - base.bad_frames
        protocol = (
            d_bytes >= REWIRED_MIN_BYTES
            and d_bad >= REWIRED_MIN_ERRORS
            and d_good <= REWIRED_MAX_GOOD_SHARE * (d_good + d_bad)
        )
        address = False
        d_own: int | None = None
        if sample.own_frames is not None and base.own_frames is not None:
            d_own = sample.own_frames - base.own_frames
            d_foreign = (sample.foreign_frames or 0) - (base.foreign_frames or 0)
            address = d_foreign >= REWIRED_MIN_FOREIGN and d_own == 0
        if not self.rewired and (protocol or address):
            self.rewired = True
            seen: dict[str, Any] = {"bytes": d_bytes, "good_frames": d_good, "bad_frames": d_bad}
            if address:
                seen["addresses"] = list(sample.foreign_addresses)
            detail = {
                "reason": "protocol" if protocol else "address",
                "expected": {"protocol": self.protocol, "addresses": self.addresses},
                "seen": seen,
                "window_s": f"{self.rewired_after_s:g}",
            }
            return [(REWIRED_CODE, True, detail)]
        expected_back = d_own > 0 if d_own is not None else d_good > 0
        if self.rewired and not (protocol or address) and expected_back:
            self.rewired = False
            return [(REWIRED_CODE, False, {"good_frames": d_good, "bad_frames": d_bad})]
        return []


def sample_port(port: Any, now: float) -> Sample:
    """Read one port's counters (poll, relay or listen port; collector/daemon.py)."""
    parser = getattr(port, "driver", None) or port.monitor
    counters: dict[str, int] = parser.counters
    errors = port.stats.errors
    foreign = getattr(parser, "foreign_addresses", None)
    return Sample(
        at=now,
        online=port.stats.online,
        rx_bytes=port.rx_bytes,
        other_bytes=getattr(port, "pos_rx_bytes", 0),
        good_frames=sum(counters.get(k, 0) for k in GOOD_FRAME_COUNTERS),
        bad_frames=sum(n for kind, n in errors.items() if kind in FRAMING_ERRORS),
        own_frames=counters.get("own_responses") if foreign is not None else None,
        foreign_frames=counters.get("foreign") if foreign is not None else None,
        foreign_addresses=tuple(sorted(foreign)) if foreign else (),
    )


class LineCheckTask:
    """Sample every port each :data:`TICK_S`; alarm through its sink (store first)."""

    def __init__(
        self,
        ports: Sequence[Any],
        watches: Sequence[LineWatch],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ports = list(ports)
        self.watches = list(watches)
        self.clock = clock

    def check(self) -> None:
        now = self.clock()
        for port, watch in zip(self.ports, self.watches, strict=True):
            for code, raised, detail in watch.feed(sample_port(port, now)):
                if not port.sink.alarm(code, f"p{port.number:02d}", raised, detail):
                    watch.undo(code, raised)  # the store refused it: the next tick tries again

    async def run(self) -> None:
        while True:
            await asyncio.sleep(TICK_S)
            self.check()
