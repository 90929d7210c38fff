"""The uplink's link alarms as stored records (SPEC D18 UPLINK_FAILOVER, F1
NETWORK_LOSS, COMMAND_CHANNEL_DOWN; docs/alarms.md), source ``uplink``.

uplink/failover.py and uplink/command_policy.py decide the transitions; this
stores them first, like every alarm (through the store's writer), so an
outage's alarms reach the platform once a link works. A state the last run
left raised (stopped on a backup, during an outage, with the command channel
down) is read back from the store, so it is cleared when it ends instead of
hanging.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from buffer.commits import NewRecord
from buffer.schema import StoreError
from collector.station.records import alarm_record
from collector.station.selfcheck import last_raise
from uplink.command_policy import COMMAND_CHANNEL_DOWN
from uplink.failover import NETWORK_LOSS, UPLINK_FAILOVER

if TYPE_CHECKING:
    from buffer.store import OrderStore
    from uplink.mqtt import Uplink

SOURCE = "uplink"


def hook_link_alarms(uplink: Uplink, store: OrderStore, tz: timezone) -> None:
    now_ms = time.time_ns() // 1_000_000
    loss = last_raise(store, SOURCE, NETWORK_LOSS)
    since = None
    if loss is not None:  # an outage the last run did not see end
        since = loss.get("detail", {}).get("down_since_ms")
        since = since if isinstance(since, int) else now_ms
    failover = last_raise(store, SOURCE, UPLINK_FAILOVER)
    backup = None if failover is None else failover.get("detail", {}).get("to")
    uplink.failover.restore(
        time.monotonic(),
        now_ms,
        failover_raised=failover is not None,
        loss_down_since_ms=since,
        backup_name=backup if isinstance(backup, str) else None,
    )
    commands_down = last_raise(store, SOURCE, COMMAND_CHANNEL_DOWN) is not None
    uplink.commands.policy.restore(alarm_raised=commands_down)

    def on_alarm(code: str, raised: bool, detail: dict[str, Any]) -> None:
        """Hand the transition to the store's writer (committed in order, retried
        while the store refuses); not taken, StoreError: the uplink undoes the
        transition and emits it again at its next decision point."""
        now = datetime.now(tz).replace(tzinfo=None)
        rid, body = alarm_record(SOURCE, code, raised, now, tz, detail)
        if not store.writer.submit(NewRecord("alarm", rid, body), lambda outcome: uplink.wake()):
            raise StoreError(f"{store.path}: the store's queue is full: {rid} not taken")

    uplink.on_alarm = on_alarm
