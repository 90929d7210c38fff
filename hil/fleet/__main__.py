"""``python -m hil.fleet [--collectors N] [--seconds S] [--rate R] [--quick] [--json]``

Runs the fleet (hil/fleet/__init__.py) and prints a table, then the whole
report as one JSON line (the last line of stdout).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from hil.fleet.run import FleetOptions, run_fleet

#: --quick: a fleet small and short enough for a smoke run on a loaded CI box.
QUICK = {"collectors": 20, "seconds": 10.0, "rate": 1.0, "idle_seconds": 2.0}


def _slash(*values: object) -> str:
    return " / ".join(str(v) for v in values)


def _spread(per_endpoint: dict[str, int]) -> str:
    return " ".join(f"{k}={v}" for k, v in per_endpoint.items())


def _nodes(nodes: dict[str, Any]) -> str:
    return "; ".join(
        f"{name} {_slash(v['cpu_share_of_core'], v['empty_cpu_share_of_core'])}"
        f" / {v['idle_cpu_share_of_core']}"
        f" / {' -> '.join(map(str, v['rss_kb_empty_idle_end']))}"
        for name, v in nodes.items()
    )


def table(r: dict[str, Any]) -> str:
    cpu, wire, lat, idle = (
        r["cpu_share_of_core"],
        r["wire"],
        r["latency_ms"],
        r["idle_cpu_share_of_core"],
    )
    nozzle = r["records"].get("nozzle", {})
    receivers = " ".join(f"{k}={v}" for k, v in cpu["receivers"].items())
    rows = [
        ("collectors / workers / receivers", _slash(r["collectors"], r["workers"], r["receivers"])),
        ("offered orders/s (collectors x rate)", r["offered_orders_per_s"]),
        ("orders generated (committed)", r["generated"]),
        ("received exactly once", r["received_once"]),
        ("missing / duplicates / unexpected",
         _slash(r["missing"], r["duplicates"], r["unexpected"])),
        ("chain problems / replayed seq / rejects",
         _slash(r["chain_problems"], r["replayed_seq"], sum(r["rejects"].values()))),
        ("delivered orders/s (incl. the last fills' tail) / sales skipped (all busy)",
         _slash(r["delivered_orders_per_s"], r["sales_skipped"])),
        ("opened out of order: seq / depth / order nseq",
         _slash(*r["reordering"].values())),
        ("commit -> opened p50 / p99 / max ms", _slash(lat["p50"], lat["p99"], lat["max"])),
        ("broker CPU (share of a core)", cpu["broker"]),
        ("receiver CPU (each)", receivers + (" SATURATED" if r["receiver_saturated"] else "")),
        ("receivers still opening after the last PUBACK, s", r["receiver_catch_up_s"]),
        ("collector CPU (all workers / per collector)",
         _slash(cpu["workers"], cpu["per_collector"])),
        ("idle CPU broker / receivers / per collector", _slash(*idle.values())),
        ("CPU µs per sale (order + its nozzle records) collector / broker / receivers",
         _slash(*r["cpu_us_per_sale"].values())),
        ("nozzle records generated / once / dup",
         _slash(*(nozzle.get(k) for k in ("generated", "received_once", "duplicates")))),
        ("orders per order message", wire["orders_per_message"]),
        ("messages per sale (order + nozzle) / MQTT bytes per sale",
         _slash(wire["messages_per_sale"], wire["mqtt_bytes_per_sale"])),
        ("bytes per order: payload / MQTT",
         _slash(wire["order_payload_bytes_per_order"], wire["order_mqtt_bytes_per_order"])),
        ("heartbeats per s per collector / payload bytes",
         _slash(wire["heartbeats_per_s_per_collector"], wire["heartbeat_payload_bytes"])),
        ("connections / retained online states",
         _slash(r["connections"], r["retained_online_states"])),
        ("stations per endpoint", _spread(r["stations_per_endpoint"])),
        (
            "broker nodes: CPU / CPU empty / idle / RSS kB empty -> idle -> end",
            _nodes(r["broker_nodes"]),
        ),
        ("worker loop lag p99 / max ms (simulation's own stalls)",
         " ".join(_slash(w["p99"], w["max"]) for w in r["worker_loop_lag_ms"])),
        ("drained / reconnects", _slash(r["drained"], r["reconnects"])),
        ("load average start -> end", f"{r['loadavg_start']} -> {r['loadavg_end']}"),
    ]  # fmt: skip
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hil.fleet", description=__doc__)
    parser.add_argument("--collectors", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=60.0, help="generation time")
    parser.add_argument("--rate", type=float, default=1.0, help="orders/s per collector (mean)")
    parser.add_argument("--workers", type=int, default=4, help="collector processes")
    parser.add_argument(
        "--receivers", type=int, default=2, help="receiver processes ($share if > 1)"
    )
    parser.add_argument("--heartbeat-s", type=float, default=30.0)
    parser.add_argument("--batch", type=int, default=100, help="uplink batch_max_records")
    parser.add_argument("--inflight", type=int, default=4, help="uplink max_inflight")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--idle-seconds", type=float, default=5.0, help="idle window before the go")
    parser.add_argument("--dir", type=Path, default=None, help="where the stores go (a real disk)")
    parser.add_argument(
        "--orders-only", action="store_true", help="no nozzle state records (3 per sale)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument(
        "--cluster", action="store_true", help="three RabbitMQ nodes, stations spread over them"
    )
    parser.add_argument("--kill-node", type=int, default=None, help="with --cluster: SIGKILL it")
    parser.add_argument("--kill-after-s", type=float, default=10.0, help="… this long after go")
    parser.add_argument(
        "--quick", action="store_true", help=f"smoke run, overriding those options: {QUICK}"
    )
    parser.add_argument("--json", action="store_true", help="only the JSON report")
    args = parser.parse_args(argv)
    given = {k: v for k, v in vars(args).items() if k not in ("quick", "json", "orders_only")}
    given["nozzle_records"] = not args.orders_only
    if args.quick:
        given.update(QUICK)
    result = run_fleet(FleetOptions(**given))
    if not args.json:
        print(table(result))
    print(json.dumps(result, sort_keys=True))
    kinds = [result, *result["records"].values()]
    ok = all(k["received_once"] == k["generated"] for k in kinds) and result["chain_problems"] == 0
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
