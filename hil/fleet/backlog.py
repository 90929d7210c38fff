"""``python -m hil.fleet.backlog [--sales 3000]``: how a station's backlog drains.

In-process, no broker: a real store is filled with sales as a forecourt
makes them (per sale ``lifted``, ``fuelling``, the order, ``idle``, at
realistic times, interleaved across 32 nozzles), then the uplink's own
paging and cutting (``unsent_page`` 100 at a time, :func:`uplink.mqtt.batches`,
``_seal_texts``) says how many messages and bytes a catch-up costs, and the
fleet receiver's :meth:`~hil.fleet.receiver.FleetReceiver.handle` what
opening them costs, against the same orders sealed one per message (the
live case). Figures for docs/scaling.md.
"""

from __future__ import annotations

import argparse
import io
import json
import random
import tempfile
import time
from pathlib import Path
from typing import Any

from buffer.store import OrderStore, StoredRecord
from hil.fleet.orders import OrderMaker, nozzle_body
from hil.fleet.receiver import FleetReceiver
from uplink.mqtt import PAGE_BATCHES, Uplink, UplinkSettings, batches

#: 16 pumps x 2 nozzles: a busy forecourt (docs/store.md's 32 nozzles).
NOZZLES = [f"p{p:02d}.a1.n{n}" for p in range(1, 17) for n in (1, 2)]

#: Seconds from lift to fuelling and of a fill: what a forecourt takes.
LIFT_S, FILL_S = 10.0, (60.0, 180.0)

#: A busy station's peak hour: 4 800 sales/day x 12 % / 3 600 s (docs/scaling.md).
SALES_PER_S = 0.16

KEY = bytes(range(16))
DEV, KID = "fleet-0001", "k1"


def fill(store: OrderStore, sales: int, rng: random.Random) -> int:
    """Commit ``sales`` sales' records in the order a forecourt makes them."""
    maker = OrderMaker(DEV, random.Random(rng.random()))
    maker.nozzles = NOZZLES
    maker.order_no = dict.fromkeys(NOZZLES, 100_000)
    maker.totalizer = dict.fromkeys(NOZZLES, 10_000_000)
    free_at, t = dict.fromkeys(NOZZLES, 0.0), 0.0
    events: list[tuple[float, int, str, str]] = []
    while len(events) < 4 * sales:
        t += rng.expovariate(SALES_PER_S)
        idle = [n for n in NOZZLES if free_at[n] <= t]
        if not idle:
            continue
        nozzle, fill_s = rng.choice(idle), rng.uniform(*FILL_S)
        free_at[nozzle] = end = t + LIFT_S + fill_s
        events += [(t, 0, "lifted", nozzle), (t + LIFT_S, 0, "fuelling", nozzle)]
        events += [(end, 0, "order", nozzle), (end, 1, "idle", nozzle)]
    for n, (at, _, what, nozzle) in enumerate(sorted(events)):
        if what == "order":
            store.append_orders([maker.next(nozzle)])
        else:
            body = nozzle_body(nozzle, what, maker.totalizer[nozzle])
            store.append_record("nozzle", f"{nozzle}:state:{int(at * 1000)}.{n}", body)
    return sum(1 for e in events if e[2] == "order")


def open_cost(payloads: list[tuple[str, bytes]], records: int) -> float:
    """µs of CPU per record to open ``payloads`` with the fleet receiver."""
    rx = FleetReceiver(0, {KID: KEY}, {KID: DEV}, io.StringIO())
    started = time.process_time()
    for kind, payload in payloads:
        rx.handle(f"forecourt/v1/{DEV}/up/{kind}", payload, 1)
    return (time.process_time() - started) / records * 1e6


def measure(sales: int, seed: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        store = OrderStore(Path(tmp) / "s.sqlite")
        made = fill(store, sales, random.Random(seed))
        settings = UplinkSettings(device_id=DEV, host="-", port=1, kid=KID, key=KEY)
        uplink = Uplink(settings, store, dict)
        records: list[StoredRecord] = []
        backlog: list[tuple[str, bytes]] = []
        cursor = 0
        while page := store.unsent_page(cursor, PAGE_BATCHES * settings.batch_max_records):
            cursor = page[-1].id
            records += page
            backlog += [
                (run[0].kind, uplink._seal_texts(run, run[0].kind))
                for run in batches(page, settings.batch_max_records)
            ]
        live = [(r.kind, uplink._seal_texts([r], r.kind)) for r in records]
        orders = [p for k, p in backlog if k == "order"]
        store.close()
    return {
        "sales": made,
        "records": len(records),
        "backlog_messages_per_sale": round(len(backlog) / made, 3),
        "live_messages_per_sale": round(len(live) / made, 2),
        "backlog_order_payload_bytes_per_order": round(sum(map(len, orders)) / made, 1),
        "open_us_per_record_backlog": round(open_cost(backlog, len(records)), 1),
        "open_us_per_record_live": round(open_cost(live, len(records)), 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hil.fleet.backlog", description=__doc__)
    parser.add_argument("--sales", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    print(json.dumps(measure(args.sales, args.seed), sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
