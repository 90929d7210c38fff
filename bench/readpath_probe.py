"""``forecourt run`` in-process, timing every poll port's read callback.

Started by bench/readpath.py as ``python bench/readpath_probe.py run …`` with
READPATH_REPORT set (the output JSON path). The daemon is the real one
(collector.cli.main, after the same validate-and-exec step, exec'ing this
probe again); before it starts, :meth:`collector.station.port.PollPort._readable`
(the loop callback a byte from the dispenser runs in: read, parse, and
whatever the sink does with the events) is wrapped to measure its wall time
with ``perf_counter_ns``; so are the store writer's steps between callbacks
(``RecordWriter.commit_once``: one batched commit; ``OrderStore.evict_step``:
one eviction step), which hold the loop while they run. At exit (the bench
stops the daemon with SIGTERM) the report holds each one's quantiles and
the longest ones.
"""

from __future__ import annotations

import atexit
import json
import os
import sys
import time
from array import array
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

#: Durations kept (8 bytes each): hours of 32 busy ports fit.
MAX_SAMPLES = 4_000_000


def _validate_and_exec(argv: list[str]) -> None:
    """What ``forecourt run`` does before the daemon: validate, exec with the
    views — exec'ing this probe again, so the timing covers the daemon."""
    from collector import version
    from config.handoff import exec_daemon
    from config.loader import load_config

    config_at = argv.index("--config") + 1
    overrides = [argv[i + 1] for i, item in enumerate(argv) if item == "--set"]
    config = load_config(Path(argv[config_at]), overrides)
    exec_daemon(config, [__file__, *argv], version())


def _timed(cls: type, name: str) -> array:
    """Wrap ``cls.name`` to append each call's wall time (ns) to the array returned."""
    samples = array("q")
    method = getattr(cls, name)
    now = time.perf_counter_ns

    def timed(self: object, *args: object, **kwargs: object) -> object:
        began = now()
        try:
            return method(self, *args, **kwargs)
        finally:
            if len(samples) < MAX_SAMPLES:
                samples.append(now() - began)

    setattr(cls, name, timed)
    return samples


def _summary(samples: array) -> dict[str, object]:
    ordered = sorted(samples)
    n = len(ordered)

    def q(x: float) -> float:
        return round(ordered[min(n - 1, int(x * n))] / 1e6, 3) if n else 0.0

    return {
        "calls": n,
        "p50_ms": q(0.5),
        "p99_ms": q(0.99),
        "p999_ms": q(0.999),
        "max_ms": round(ordered[-1] / 1e6, 3) if n else 0.0,
        "longest_ms": [round(v / 1e6, 3) for v in ordered[-10:]],
        "over_2ms": sum(1 for v in ordered if v > 2_000_000),
    }


def _instrument(report: Path) -> None:
    from buffer.store import OrderStore
    from buffer.writer import RecordWriter
    from collector.station.port import PollPort

    callbacks = _timed(PollPort, "_readable")
    commits = _timed(RecordWriter, "commit_once")
    evictions = _timed(OrderStore, "evict_step")

    def write() -> None:
        out = _summary(callbacks)
        out["callbacks"] = out.pop("calls")
        out["writer_commit"] = _summary(commits)
        out["eviction_step"] = _summary(evictions)
        report.write_text(json.dumps(out))

    atexit.register(write)


if __name__ == "__main__":
    if "--validated-fd" not in sys.argv:
        _validate_and_exec(sys.argv[1:])
    _instrument(Path(os.environ["READPATH_REPORT"]))
    from collector.cli import main

    raise SystemExit(main(sys.argv[1:]))
