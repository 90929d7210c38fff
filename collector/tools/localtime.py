"""Times a technician reads: the station's wall clock with its offset.

Records keep the time they were stamped with (an order's ``ended_at`` is the
dispenser's clock at ``device.timezone``; the store's own ``STORE_*`` alarms
are stamped in UTC; a capture's frames in UTC), all
ISO 8601 with an offset, so each names one instant. The web page and the CLI
show every such time at ``device.timezone`` — the time on the forecourt's
clocks — whatever the gateway's own ``TZ`` (usually UTC on an embedded box):
an alarm raised at 12:47 in the station reads ``12:47:00.000+08:00``.

Pure functions, no I/O: collector/tools/control.py applies them to its answers
(the page reads those), collector/tools/techcli.py to what it reads from the store
when the collector is down.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timezone, tzinfo
from typing import Any

#: Keys whose string values are times (contract records, status, capture).
TIME_KEYS = frozenset({"at", "started_at", "ended_at", "clock"})

#: ``device.timezone``'s default (config/models_device.py), for a config without it.
DEFAULT_OFFSET = "+08:00"


def station_tz(raw: Mapping[str, Any]) -> tzinfo:
    """``device.timezone`` of a raw (unvalidated) config, its default when absent."""
    from config.derived import parse_offset

    device = raw.get("device", {})
    text = device.get("timezone", DEFAULT_OFFSET) if isinstance(device, Mapping) else None
    try:
        return timezone(parse_offset(str(text)))
    except ValueError:
        return timezone(parse_offset(DEFAULT_OFFSET))  # the validator refuses it at start


def local_iso(text: str, tz: tzinfo) -> str:
    """``text`` (ISO 8601 with an offset) as the same instant at ``tz``, with
    the precision it had; anything else (naive, not a time) unchanged."""
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        return text
    if at.tzinfo is None:
        return text  # no offset: which instant it names is unknown, so it stays as said
    _, _, clock = text.partition("T")
    timespec = "milliseconds" if "." in clock else "seconds"
    return at.astimezone(tz).isoformat(timespec=timespec)


def local_times(value: Any, tz: tzinfo) -> Any:
    """A copy of ``value`` (dicts and lists, any depth) with every time under
    :data:`TIME_KEYS` at ``tz``."""
    if isinstance(value, dict):
        return {
            k: local_iso(v, tz) if k in TIME_KEYS and isinstance(v, str) else local_times(v, tz)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [local_times(v, tz) for v in value]
    return value
