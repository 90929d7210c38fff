"""Self-check at start: was the previous stop clean? (SPEC F1, D17)

A marker file beside the store (``<store>.running``) exists exactly while
the collector runs: written (and fsynced) once the store is open, removed
by a clean stop. Found at start, it means the last run ended without
stopping — power lost, the process killed, the kernel hung — and an
``UNCLEAN_STOP`` alarm tells the platform when the previous run began.
Nothing collected is lost either way (store first); the alarm is for the
regulator's picture of the box.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import structlog

from config.atomic import fsync_dir, write_atomically

log = structlog.get_logger("collector.station.selfcheck")


def marker_path(store_path: Path) -> Path:
    return store_path.with_name(store_path.name + ".running")


def begin_run(store_path: Path) -> int | None:
    """Mark this run; return the start time (epoch ms) of a previous run that
    did not stop cleanly, or None."""
    marker = marker_path(store_path)
    previous: int | None = None
    try:
        previous = int(marker.read_text().strip() or 0)
    except FileNotFoundError:
        previous = None
    except (OSError, ValueError):
        previous = 0  # there, but unreadable: still an unclean stop
    write_atomically(marker, str(time.time_ns() // 1_000_000).encode("ascii"))
    return previous


def end_run(store_path: Path) -> None:
    """A clean stop: the next start finds no marker (its removal on flash too,
    or a power cut soon after would bring it back as an unclean stop)."""
    marker = marker_path(store_path)
    marker.unlink(missing_ok=True)
    fsync_dir(marker.parent)


def last_raise(store: Any, source: str, code: str) -> dict[str, Any] | None:
    """The last stored transition of alarm ``code`` for ``source`` when it is
    a raise, else None: a state alarm's starting point after a restart, so an
    episode still going is not raised twice and one that ended is cleared."""
    from buffer.store import StoreError

    try:
        last = store.last_record_under("alarm", f"{source}:{code}:")
    except StoreError as exc:  # unreadable now: start from "not raised"
        log.error("alarm_state_not_read", source=source, code=code, exc_info=exc)
        return None
    return last if last is not None and last.get("state") == "raised" else None


def alarm_raised(store: Any, source: str, code: str) -> bool:
    """Whether the last stored transition of ``code`` for ``source`` is a raise."""
    return last_raise(store, source, code) is not None
