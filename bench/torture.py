"""Long torture runs: 200 SIGKILLs (some aimed at the two windows), and a long
broker outage.

    .venv/bin/python bench/torture.py kills [--kills 200] [--aims 40] [--pumps 8]
    .venv/bin/python bench/torture.py outage [--seconds 3600] [--pumps 4]

Same harness and judge as tests/test_torture_*.py (hil/torture.py): the
platform receiver implements the contract on its own, the judgement waits
for quiescence, compares every field and reports duplicates and what the
kills covered. Prints one JSON line: the report, the first problems, the
wall time.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hil.torture import Station


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["kills", "outage"])
    parser.add_argument("--kills", type=int, default=200)
    parser.add_argument("--aims", type=int, default=40, help="kills aimed inside the windows")
    parser.add_argument("--seconds", type=float, default=3600)
    parser.add_argument("--pumps", type=int, default=8)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    aims = ("order_committed", "batch_acked:order") * (args.aims // 2)
    with tempfile.TemporaryDirectory(dir="/var/tmp") as tmp:
        if args.mode == "kills":
            # ~1.5 s per kill: each pump sells for about as long as the kill loop.
            station = Station(Path(tmp), args.pumps, args.kills // 3 + 10, 0.2, args.seed)
        else:
            per_pump = max(20, int(args.seconds * 0.05))
            station = Station(Path(tmp), args.pumps, per_pump, 0.05, args.seed)
        started = time.monotonic()
        try:
            if args.mode == "kills":
                station.kill_loop(args.kills, rng, delay=(0.2, 1.5), aims=aims)
                station.start_collector()
            else:
                station.start_collector()
                station.broker.stop()
                time.sleep(args.seconds)
                station.broker.start()
            verdict = station.judge(timeout=args.seconds + 600)
        finally:
            station.stop()
        print(
            json.dumps(
                {
                    "mode": args.mode,
                    "outage_s": args.seconds if args.mode == "outage" else 0,
                    **verdict.report,
                    "first_problems": verdict.problems[:20],
                    "wall_s": round(time.monotonic() - started),
                }
            )
        )


if __name__ == "__main__":
    main()
