"""structlog set-up (JSON lines for journald, key=value on a terminal), and
:class:`Repeats`: the one way a warning that can come once per event is
logged.

A warning a peer can cause once per frame, request or message — a bad
frame on a noisy line, a refused web connection, a malformed control
request, a forged command — must not cost a log line each: random noise on
one 9 600 baud line would write hundreds of MiB a day to the journal on
NAND flash (docs/security.md "Log volume"). Such a warning goes through a
:class:`Repeats`, which counts every event and logs, per source and kind in
each :data:`REPEAT_WINDOW_S`, the first instance in full and, at the
window's end, one summary line with how many more there were. The counts
are kept (:func:`counters`) for ``forecourt status`` and the web page.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections import Counter, deque
from collections.abc import Callable, Hashable
from dataclasses import KW_ONLY, dataclass, field
from typing import Any

import structlog

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


#: The web page's log tail: the last rendered lines, bounded so it costs at
#: most ~100 KiB whatever the daemon logs.
RECENT_LINES = 200
RECENT: deque[str] = deque(maxlen=RECENT_LINES)

#: Per source and kind, one line in full and one summary line per window:
#: a minute keeps a noisy line or a hostile client to a few KiB of log a
#: minute, and a technician following the journal still sees each kind
#: within a minute of its first occurrence.
REPEAT_WINDOW_S = 60.0
#: Distinct (source, kind) pairs one :class:`Repeats` keeps apart. Sources and
#: kinds are the daemon's own (port numbers, protocol error tokens, refusal
#: names), so this is never reached honestly; past it, events are counted
#: under :data:`OVERFLOW` and memory stays bounded whatever a caller passes.
MAX_KEYS = 512
OVERFLOW: tuple[str, str] = ("*", "other")

#: Every live :class:`Repeats` by its event name (the latest of a name wins):
#: what :func:`counters` reports.
_REGISTRY: dict[str, Repeats] = {}


@dataclass(eq=False)
class Repeats:
    """Warnings named ``event``, each with a ``kind`` and a ``source``,
    counted always and logged at most twice per (source, kind) a window.

    The first event of a (source, kind) in a window is logged in full (with
    its traceback when :meth:`add` is given ``exc``); when the window ends,
    one ``<event>_repeated`` line per pair that came again says how many
    more (``more``). The window ends at the first :meth:`add` past it or on
    a loop timer, whichever is first, so the summary comes out even when the
    events stop. ``clock`` is monotonic seconds (a test passes simulated
    time). ``source_field``: the source's name in the log line (``port``),
    or None when the kind alone says enough (one web server, one socket).
    """

    log: Any
    event: str
    _: KW_ONLY
    source_field: str | None = "source"
    window_s: float = REPEAT_WINDOW_S
    clock: Callable[[], float] = time.monotonic
    #: Events since start by (source, kind).
    totals: Counter[tuple[Hashable, str]] = field(default_factory=Counter, init=False)
    #: Lines written: events in full and summaries.
    lines: int = field(default=0, init=False)
    _window: Counter[tuple[Hashable, str]] = field(default_factory=Counter, init=False)
    _window_end: float | None = field(default=None, init=False)
    _timer: asyncio.TimerHandle | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        _REGISTRY[self.event] = self

    def add(
        self, kind: str, source: Hashable = "", *, exc: BaseException | None = None, **fields: Any
    ) -> bool:
        """Count one event; True when it was logged in full (the first of its
        source and kind in this window). ``fields`` go on that line."""
        now = self.clock()
        if self._window_end is not None and now >= self._window_end:
            self.flush()
        key: tuple[Hashable, str] = (source, kind)
        if key not in self.totals and len(self.totals) >= MAX_KEYS:
            key = OVERFLOW
        self.totals[key] += 1
        self._window[key] += 1
        if self._window[key] > 1:
            return False
        if self._window_end is None:
            self._window_end = now + self.window_s
            self._arm()
        where = {} if self.source_field is None else {self.source_field: key[0]}
        self.lines += 1
        if exc is not None:
            self.log.error(self.event, kind=key[1], **where, **fields, exc_info=exc)
        else:
            self.log.warning(self.event, kind=key[1], **where, **fields)
        return True

    def flush(self) -> None:
        """End the window: one summary line per pair that came more than once."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for (source, kind), count in self._window.items():
            if count > 1:
                where = {} if self.source_field is None else {self.source_field: source}
                self.lines += 1
                self.log.warning(
                    f"{self.event}_repeated",
                    kind=kind,
                    **where,
                    more=count - 1,
                    window_s=self.window_s,
                )
        self._window.clear()
        self._window_end = None

    def close(self) -> None:
        """Write what the open window holds (at shutdown)."""
        self.flush()

    def _arm(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop (a script, a test): the next add past the window ends it
        self._timer = loop.call_later(self.window_s, self._due)

    def _due(self) -> None:
        self._timer = None
        self.flush()

    def by_kind(self) -> dict[str, int]:
        """Events since start by kind, over all sources."""
        out: Counter[str] = Counter()
        for (_, kind), count in self.totals.items():
            out[kind] += count
        return dict(out)

    def of_source(self, source: Hashable) -> dict[str, int]:
        """Events since start of one source, by kind."""
        return {kind: n for (s, kind), n in self.totals.items() if s == source}

    def stats(self) -> dict[str, Any]:
        """Events counted, lines written, and the events by kind."""
        return {"events": sum(self.totals.values()), "lines": self.lines, "kinds": self.by_kind()}


def counters() -> dict[str, dict[str, Any]]:
    """Every :class:`Repeats` that counted something: ``{event: stats}``."""
    return {name: r.stats() for name, r in sorted(_REGISTRY.items()) if r.totals}


def close_all() -> None:
    """End every open window (at shutdown): no count goes unlogged."""
    for repeats in _REGISTRY.values():
        repeats.close()


def _remember(logger: Any, method: str, line: Any) -> Any:
    """After the renderer: keep the rendered line for the log tail."""
    RECENT.append(str(line))
    return line


def processors(fmt: str) -> list[structlog.typing.Processor]:
    """The daemon's processor chain: ``fmt`` is ``json`` or ``console`` (key=value)."""
    renderer: structlog.typing.Processor
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer()
    else:
        renderer = structlog.processors.KeyValueRenderer(
            key_order=["timestamp", "level", "event"], drop_missing=True
        )
    return [
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        renderer,
        _remember,
    ]


def configure(level: str = "info", fmt: str = "auto") -> None:
    """``fmt``: ``json``, ``console`` (key=value) or ``auto`` (console on a tty)."""
    if fmt == "auto":
        fmt = "console" if sys.stderr.isatty() else "json"
    structlog.configure(
        processors=processors(fmt),
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )
