"""Store one alarm now, the way every part of the collector does (D14, F1).

The alarm is stamped with the local time of ``tz`` (records.py gives its
body and rid), stored first — the store is the only place an alarm exists —
and the uplink woken when the record is new. A store that refuses (full,
locked, gone) is logged and answered False: the caller decides whether the
transition is asked for again (seals, line checks) or only counted.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import structlog

from collector.records import alarm_record

if TYPE_CHECKING:
    from buffer.store import OrderStore

log = structlog.get_logger("alarms")


def store_alarm(
    store: OrderStore,
    source: str,
    code: str,
    raised: bool,
    tz: timezone,
    detail: dict[str, Any],
    *,
    rid: str | None = None,
    wake: Callable[[], None] | None = None,
) -> bool:
    """True when the alarm is in the store (new, or already there by its rid).

    ``rid``: a caller's own stable id (one alarm per command, say) instead of
    records.py's ``source:code:state:ms``.
    """
    from buffer.store import StoreError

    now = datetime.now(tz).replace(tzinfo=None)
    made, body = alarm_record(source, code, raised, now, tz, detail)
    rid = rid or made
    try:
        stored = store.append_record("alarm", rid, body)
    except StoreError as exc:
        log.error("record_not_stored", kind="alarm", rid=rid, error=str(exc))
        return False
    if stored is not None and wake is not None:
        wake()
    return True
