"""Store one alarm now, the way every part of the collector does (D14, F1).

The alarm is stamped with the local time of ``tz`` (records.py gives its
body and rid) and handed to the store's writer (buffer/writer.py) — the
store is the only place an alarm exists: committed in order, retried while
the store refuses, the uplink woken once it is new. False when the writer
could not take it (its queue full during a long store fault; logged,
counted there): the caller decides whether the transition is asked for
again (seals) or only counted. ``then`` runs once it is committed: what
must wait for the commit (a note file removed) waits there.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import structlog

from collector.station.records import alarm_record

if TYPE_CHECKING:
    from buffer.commits import Outcome
    from buffer.store import OrderStore

log = structlog.get_logger("alarms")

#: The last stamp (epoch ms) per (source, code): two transitions in one
#: millisecond get two rids, never one record "already stored".
_last_ms: dict[tuple[str, str], int] = {}


def _stamp(source: str, code: str, tz: timezone) -> datetime:
    now = datetime.now(tz)
    ms = int(now.timestamp() * 1000)
    last = _last_ms.get((source, code), 0)
    if ms <= last:
        ms = last + 1
        now = datetime.fromtimestamp(ms / 1000, tz)
    _last_ms[(source, code)] = ms
    return now.replace(tzinfo=None)


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
    then: Callable[[Outcome], None] | None = None,
) -> bool:
    """True when the writer took the alarm (it is then committed in order, or
    found already stored by its rid).

    ``rid``: a caller's own stable id (one alarm per command, say) instead of
    records.py's ``source:code:state:ms``.
    """
    from buffer.commits import NewRecord, Result

    made, body = alarm_record(source, code, raised, _stamp(source, code, tz), tz, detail)
    rid = rid or made

    def decided(outcome: Outcome) -> None:
        if outcome.result is Result.STORED and wake is not None:
            wake()
        if not outcome.kept:
            log.error("record_not_stored", kind="alarm", rid=rid, error=outcome.detail)
        if then is not None:
            then(outcome)

    if store.writer.submit(NewRecord("alarm", rid, body), decided):
        return True
    log.error("record_not_taken", kind="alarm", rid=rid)
    return False
