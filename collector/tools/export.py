"""``forecourt export``: stored orders as CSV or JSON lines (docs/cli.md).

Read-only (``mode=ro``) through sqlite-utils, streamed row by row, so a
month of orders is exported in constant memory whether or not the collector
runs. ``--since`` / ``--until`` select on the commit time (``created_ms``).
"""

from __future__ import annotations

import csv
import json
import sys
from typing import Any, TextIO

#: Exit status (docs/cli.md): no store path given; the store cannot be read.
EXIT_USAGE, EXIT_STORE = 2, 4

#: Columns of the CSV, in the order a spreadsheet shows them; the order's
#: fields (platform-interface.md) plus the store's own id, nseq and sent state.
CSV_COLUMNS = (
    "id", "nozzle", "nseq", "order_no", "grade", "price", "volume", "amount",
    "totalizer_volume_start", "totalizer_volume_end", "started_at", "ended_at",
    "station", "h", "created_ms", "sent",
)  # fmt: skip


def rows(store: str, since_ms: int | None, until_ms: int | None) -> Any:
    import sqlite_utils

    from buffer.codec import to_text
    from collector.tools.storeview import open_readonly, select_orders

    db = sqlite_utils.Database(open_readonly(store))
    sql, args = select_orders(since_ms=since_ms, until_ms=until_ms)
    for row in db.query(sql + " ORDER BY id", args):
        order = json.loads(to_text(row.pop("body"), row.pop("h"), row.pop("prev")))
        order.update(row)
        order["sent"] = order.pop("sent_ms") is not None
        yield order


def export(
    store: str | None, since_ms: int | None, until_ms: int | None, fmt: str, out: TextIO
) -> int:
    import sqlite3

    from collector.tools.storeview import StoreUnavailable

    if store is None:
        print("forecourt: no store path (give --store or --config)", file=sys.stderr)
        return EXIT_USAGE
    try:
        if fmt == "jsonl":
            for order in rows(store, since_ms, until_ms):
                out.write(json.dumps(order, ensure_ascii=False) + "\n")
        else:
            writer = csv.DictWriter(out, CSV_COLUMNS, extrasaction="ignore")
            writer.writeheader()
            for order in rows(store, since_ms, until_ms):
                writer.writerow(order)
    except StoreUnavailable as exc:
        print(f"forecourt: {exc}", file=sys.stderr)
        return EXIT_STORE
    except (sqlite3.Error, ValueError) as exc:  # damaged pages, an unreadable body
        out.flush()
        print(f"forecourt: {store}: cannot read store: {exc} (export incomplete)", file=sys.stderr)
        return EXIT_STORE
    return 0
