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


def test_batches_are_one_per_kind_each_in_id_order() -> None:
    kinds = ["nozzle", "order", "nozzle", "alarm", "order", "nozzle", "alarm"]
    recs = [StoredRecord(i, kind, str(i), {}) for i, kind in enumerate(kinds, start=1)]
    assert [[r.id for r in run] for run in batches(recs, 100)] == [[1, 3, 6], [2, 5], [4, 7]]
    assert [[r.id for r in run] for run in batches(recs, 2)] == [[1, 3], [6], [2, 5], [4, 7]]
