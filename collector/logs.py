"""structlog set-up: JSON lines for journald, key=value on a terminal."""

from __future__ import annotations

import logging
import sys
from collections import deque
from typing import Any

import structlog

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


#: The web page's log tail (issue #9): the last rendered lines, bounded so
#: it costs at most ~100 KiB whatever the daemon logs.
RECENT_LINES = 200
RECENT: deque[str] = deque(maxlen=RECENT_LINES)


def _remember(logger: Any, method: str, line: Any) -> Any:
    """After the renderer: keep the rendered line for the log tail."""
    RECENT.append(str(line))
    return line


def configure(level: str = "info", fmt: str = "auto") -> None:
    """``fmt``: ``json``, ``console`` (key=value) or ``auto`` (console on a tty)."""
    if fmt == "auto":
        fmt = "console" if sys.stderr.isatty() else "json"
    renderer: structlog.typing.Processor
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer()
    else:
        renderer = structlog.processors.KeyValueRenderer(
            key_order=["timestamp", "level", "event"], drop_missing=True
        )
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
            _remember,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )
