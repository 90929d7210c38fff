"""uplink.mqtt helpers that need no broker: backoff and batching."""

from __future__ import annotations

import random

from buffer.store import StoredRecord
from uplink.mqtt import Backoff, batches


def test_backoff_grows_to_its_cap_with_jitter() -> None:
    backoff = Backoff(1.0, 8.0, random.Random(1))
    delays = [backoff.next_delay() for _ in range(10)]
    assert all(0.5 <= d <= 8.5 for d in delays)
    assert max(delays[5:]) > 4.0  # the cap was reached
    backoff.reset()
    assert backoff.next_delay() <= 1.5


def test_batches_split_runs_of_one_kind_in_order() -> None:
    recs = [
        StoredRecord(i, kind, str(i), {})
        for i, kind in enumerate(["order", "order", "alarm", "order"], start=1)
    ]
    assert [[r.id for r in run] for run in batches(recs)] == [[1, 2], [3], [4]]
