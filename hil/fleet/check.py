"""The fleet's stream stage: join what the collectors committed with what arrived.

Pure functions over the workers' commit files and the receivers' record
lines (hil/fleet/worker.py, hil/fleet/receiver.py). What a platform does
downstream of its stateless receivers, keyed by device: deduplicate on
(``dev``, ``type``, ``rid``), order each nozzle's records by ``nseq`` (with
several receivers, two messages of one device may be opened in either
order) and follow the chain, and refuse an envelope ``seq`` seen twice.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from records.chain import GENESIS

#: Chain problems listed by name in the report (all are counted).
MAX_LISTED_PROBLEMS = 20


@dataclass(frozen=True, slots=True)
class Receipt:
    dev: str
    kind: str
    seq: int
    message: str
    rid: str
    nozzle: str
    nseq: int
    prev: str
    h: str
    h_ok: bool
    rx_ns: int


def read_commits(paths: Iterable[Path]) -> dict[tuple[str, str, str], int]:
    """``(dev, kind, rid) → commit time (epoch ns)`` from the workers' files."""
    commits: dict[tuple[str, str, str], int] = {}
    for path in paths:
        for line in path.read_text().splitlines():
            dev, kind, rid, ns = line.split("\t")
            commits[(dev, kind, rid)] = int(ns)
    return commits


def read_receipts(paths: Iterable[Path]) -> list[Receipt]:
    out: list[Receipt] = []
    for path in paths:
        for line in path.read_text().splitlines():
            dev, kind, seq, message, rid, nozzle, nseq, prev, h, h_ok, _resent, rx = line.split(
                "\t"
            )
            out.append(
                Receipt(
                    dev,
                    kind,
                    int(seq),
                    message,
                    rid,
                    nozzle,
                    int(nseq),
                    prev,
                    h,
                    h_ok == "1",
                    int(rx),
                )
            )
    return out


def percentile(values: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile of ``values`` (sorted here), None if empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = min(len(ordered), max(1, math.ceil(p / 100 * len(ordered))))
    return ordered[rank - 1]


def chain_problems(receipts: Iterable[Receipt]) -> list[dict[str, Any]]:
    """Every nozzle's first receipts in nseq order: nseq 1, 2, 3 … without a
    hole, ``prev`` of the first the genesis, each ``prev`` the previous ``h``,
    each ``h`` the hash of its record."""
    by_nozzle: dict[tuple[str, str], list[Receipt]] = defaultdict(list)
    for r in receipts:
        by_nozzle[(r.dev, r.nozzle)].append(r)
    problems: list[dict[str, Any]] = []
    for (dev, nozzle), chain in sorted(by_nozzle.items()):
        chain.sort(key=lambda r: r.nseq)
        previous_h, expected = GENESIS, 1
        for r in chain:
            where = {"dev": dev, "nozzle": nozzle, "nseq": r.nseq}
            if not r.h_ok:
                problems.append({**where, "problem": "altered"})
            if r.nseq != expected:
                problems.append({**where, "problem": "gap", "expected": expected})
            elif r.prev != previous_h:
                problems.append({**where, "problem": "broken"})
            previous_h, expected = r.h, r.nseq + 1
    return problems


def reordering(receipts: Iterable[Receipt]) -> dict[str, int]:
    """How far arrival order (opened time) strays from send order: envelope
    ``seq`` per device and order ``nseq`` per nozzle. A receiver stage behind
    a shared subscription opens a device's messages in parallel, so a replay
    check needs a window this deep, and a chain check must wait for a gap
    this long before calling it missing (docs/scaling.md)."""
    by_dev: dict[str, list[Receipt]] = defaultdict(list)
    for r in receipts:
        by_dev[r.dev].append(r)
    late_seq = late_nseq = depth = 0
    for records in by_dev.values():
        records.sort(key=lambda r: r.rx_ns)
        seen: list[int] = []
        top = 0
        heads: dict[str, int] = {}
        for r in records:
            if seen and r.seq == seen[-1]:
                continue  # the next record of the same message
            if r.seq < top:
                late_seq += 1
                depth = max(depth, sum(1 for s in seen[-64:] if s > r.seq))
            top = max(top, r.seq)
            seen.append(r.seq)
        for r in records:
            if r.kind == "order":
                if r.nseq < heads.get(r.nozzle, 0):
                    late_nseq += 1
                heads[r.nozzle] = max(heads.get(r.nozzle, 0), r.nseq)
    return {"seq_late": late_seq, "seq_late_depth_max": depth, "nseq_late": late_nseq}


def check(
    commits: dict[tuple[str, str, str], int], receipts: list[Receipt], go_ns: int
) -> dict[str, Any]:
    """Outcome and latency of one run (``go_ns``: generation start, epoch ns).
    Orders at the top level; every other kind under ``records``."""
    records = [r for r in receipts if r.kind != "heartbeat"]
    arrivals = Counter((r.dev, r.kind, r.rid) for r in records)
    first: dict[tuple[str, str, str], Receipt] = {}
    for r in records:
        key = (r.dev, r.kind, r.rid)
        if key not in first or r.rx_ns < first[key].rx_ns:
            first[key] = r
    messages_per_seq: dict[tuple[str, int], set[str]] = defaultdict(set)
    for r in receipts:
        messages_per_seq[(r.dev, r.seq)].add(r.message)
    orders = {key: ns for key, ns in commits.items() if key[1] == "order"}
    latencies = [(first[key].rx_ns - ns) / 1e6 for key, ns in orders.items() if key in first]
    problems = chain_problems(r for key, r in first.items() if key[1] == "order")
    last_ns = max((r.rx_ns for r in first.values()), default=go_ns)
    window_s = max((last_ns - go_ns) / 1e9, 1e-9)
    heartbeats = sum(1 for r in receipts if r.kind == "heartbeat" and go_ns <= r.rx_ns <= last_ns)
    kinds = sorted({key[1] for key in commits} | {key[1] for key in arrivals})
    outcome = {kind: _outcome(kind, commits, arrivals) for kind in kinds}
    order = outcome.pop("order", _outcome("order", {}, Counter()))
    return {
        **order,
        "records": outcome,
        "replayed_seq": sum(len(m) - 1 for m in messages_per_seq.values()),
        "heartbeats_in_window": heartbeats,
        "reordering": reordering(receipts),
        "chain_problems": len(problems),
        "chain_problem_list": problems[:MAX_LISTED_PROBLEMS],
        "devices_delivering": len({dev for dev, kind, _ in first if kind == "order"}),
        "delivered_orders_per_s": round(sum(1 for k in orders if k in first) / window_s, 1),
        "delivery_window_s": round(window_s, 3),
        "latency_ms": {
            "p50": _round(percentile(latencies, 50)),
            "p99": _round(percentile(latencies, 99)),
            "max": _round(max(latencies, default=None)),
        },
    }


def _outcome(
    kind: str, commits: dict[tuple[str, str, str], int], arrivals: Counter[tuple[str, str, str]]
) -> dict[str, int]:
    mine = [key for key in commits if key[1] == kind]
    return {
        "generated": len(mine),
        "received_once": sum(1 for key in mine if arrivals[key] == 1),
        "missing": sum(1 for key in mine if key not in arrivals),
        "duplicates": sum(n - 1 for key, n in arrivals.items() if key[1] == kind),
        "unexpected": sum(1 for key in arrivals if key[1] == kind and key not in commits),
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)
