"""The config property at length: many mutated configs, each accepted one started.

    .venv/bin/python bench/config_fuzz.py [--examples 300] [--seed N] [--json]

The same property as tests/test_config_property.py (hil/config_mutations.py):
a known-good config using every table gets one value changed; every config
``forecourt config check`` accepts must start to READY=1 against a real
broker and two ptys, answer on its control socket and stop with 0; every
refusal must name its key. ``make test`` runs a few dozen fixed examples;
this runs ``--examples`` fresh ones (no shrinking: every problem is listed)
and reports how many were accepted, the problems, and start → READY times.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import hypothesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from hil import config_mutations as cm
from hil.stack import Mosquitto


def run(examples: int, seed: int | None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="config-fuzz-") as tmp:
        work = Path(tmp)
        broker = Mosquitto(work / "broker")
        broker.start()
        pairs = [os.openpty() for _ in range(2)]
        try:
            station = cm.make_station(
                work, (os.ttyname(pairs[0][1]), os.ttyname(pairs[1][1])), broker.port
            )
            sites = cm.sites(cm.good_config(station, work / "template"))
            results: list[dict[str, Any]] = []

            @st.composite
            def mutations(draw: st.DrawFn) -> tuple[tuple[str | int, ...], Any]:
                site = draw(st.sampled_from(sites))
                return site.path, draw(cm.values(site, station.strings))

            @settings(
                max_examples=examples,
                phases=[Phase.generate],  # no shrinking: list every problem as found
                database=None,
                deadline=None,
                suppress_health_check=list(HealthCheck),
            )
            @given(mutations())
            def one(mutation: tuple[tuple[str | int, ...], Any]) -> None:
                path, value = mutation
                began = time.monotonic()
                example = work / f"ex{len(results)}"
                accepted, problem = cm.judge(station, example, path, value)
                results.append(
                    {
                        "key": ".".join(map(str, path)),
                        "value": repr(value)[:80],
                        "accepted": accepted,
                        "seconds": time.monotonic() - began,
                        "problem": problem and problem[:2000],
                    }
                )

            if seed is not None:
                one = hypothesis.seed(seed)(one)  # the same examples again
            one()
        finally:
            for master, slave in pairs:
                os.close(master)
                os.close(slave)
            broker.stop()
    accepted = [r for r in results if r["accepted"]]
    return {
        "examples": len(results),
        "accepted": len(accepted),
        "refused": len(results) - len(accepted),
        "keys_mutated": len({r["key"] for r in results}),
        "sites": len(sites),
        "accepted_start_stop_s_median": (
            round(statistics.median(r["seconds"] for r in accepted), 2) if accepted else None
        ),
        "problems": [r for r in results if r["problem"]],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=300)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--json", action="store_true", help="one JSON object on the last line")
    args = parser.parse_args()
    summary = run(args.examples, args.seed)
    if args.json:
        print(json.dumps(summary))
    else:
        for key, value in summary.items():
            if key != "problems":
                print(f"{key:32} {value}")
        for problem in summary["problems"]:
            print(f"PROBLEM {problem['key']} = {problem['value']}: {problem['problem']}")
    return 1 if summary["problems"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
