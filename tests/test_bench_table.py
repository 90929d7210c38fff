"""The `make bench` table builder (bench/table.py): JSON results → figure lines.

Pure functions on a results dict shaped like the benches' ``--json`` output;
no bench is run here (timing belongs in bench/, not in tests).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent


def load_table() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_table", ROOT / "bench" / "table.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_table"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


table = load_table()


def results() -> dict[str, Any]:
    """Every step as its bench prints it; each figure just inside its goal."""
    frames = {
        name: {"protocol": name, "frames": 24000, "sales": 148, "us_per_frame": us}
        for name, us in (
            ("sinopec", 33.0),
            ("dart", 16.1),
            ("gilbarco", 7.2),
            ("furen", 8.0),
            ("ck1313", 8.2),
            ("lanfeng", 9.0),
            ("uninfo", 8.0),
            ("udc", 10.3),
            ("censtar", 11.6),
        )
    }
    return {
        "startup": {"bench": "startup", "median": {"ready_s": 0.67, "rss_kb": 50000}, "runs": 3},
        "idle": {"bench": "idle_cpu", "seconds": 30.0, "cpu_pct_of_one_core": 1.23},
        "busy": {"p50": 163, "p99": 388, "max": 424, "orders": 256},
        "soak": {
            "warmup_s": 30,
            "soak_s": 120,
            "rss_steady_kb": 38000,
            "rss_end_kb": 38500,
            "rss_max_kb": 38600,
            "growth_kb": 500,
            "orders_delivered": 240,
        },
        "store": {
            "group": {"orders_per_s": 12126, "cpu_us_per_order": 80.8, "file_bytes_per_order": 286},
            "single": {"orders_per_s": 2000, "cpu_us_per_order": 300.0},
            "mark": {"marks": 1000, "ms_per_mark": 0.035},
        },
        "drain": {
            "orders": 50000,
            "drain_orders_per_s": 31894,
            "naive_orders_per_s": 315,
            "ratio": 101.3,
            "wire_payload_bytes_per_order": 79.1,
        },
        "readpath": {
            "read_callback": {"p50_ms": 0.07, "p99_ms": 0.49, "max_ms": 24.8, "callbacks": 4560},
            "p50": 166,
            "p99": 444,
            "max": 544,
            "orders": 86,
            "records_before": 250000,
            "records_after": 248089,
        },
        "relay": {"added_p50": 0.142, "added_p99": 1.068},
        "http": {
            "orders": 20000,
            "mqtt": {"orders_per_s": 9675, "wire_bytes_per_order": 107.8},
            "https": {"orders_per_s": 5467, "wire_bytes_per_order": 108.7},
        },
        "charts": {"rows": 250000, "cold_ms": 168.1, "warm_ms": 14.27, "extra_rss_kb": 1792},
        "frames": {"protocols": frames},
        "detect": {
            "passive": detect_run(11.3),
            "active": detect_run(18.0),
            "active_worst": detect_run(29.9, "4800 8E1", 99),
            "ports": {
                "ports": [detect_run(20.0)] * 32,
                "found_right": 32,
                "slowest_s": 48.8,
                "wall_s": 48.8,
            },
        },
    }


def detect_run(seconds: float, line: str = "9600 8E1", address: int = 1) -> dict[str, Any]:
    return {
        "status": "found",
        "family": "sinopec",
        "line": line,
        "addresses": [address],
        "seconds": seconds,
        "bytes_written": 0,
    }


def by_figure(rows: list[Any]) -> dict[str, Any]:
    return {row.figure: row for row in rows}


def test_every_figure_of_the_issue_has_a_line_with_its_goal() -> None:
    rows = table.rows(results())
    assert len(rows) == 24 + len(table.PROTOCOLS)
    assert {row.met for row in rows} == {table.YES, table.NO_GOAL}
    got = by_figure(rows)
    assert got["collector CPU, 32 idle polled ports"].goal == "≤ 2 % of one core"
    assert got["collector CPU, 32 idle polled ports"].measured.startswith("1.23 %")
    assert got["durable ingest, 100 orders per commit"].measured == "12 126 orders/s"
    assert got["drain ÷ naive gmssl per-order publisher, same run"].measured.startswith("101.3×")
    assert got["start → READY=1 (sd_notify)"].measured == "0.67 s (median of 3)"
    # A reference figure without a goal is never called met or not met.
    assert got["durable ingest, one order per commit (a port's sale)"].met == table.NO_GOAL


@pytest.mark.parametrize(
    ("step", "path", "value", "figure"),
    [
        ("idle", ("cpu_pct_of_one_core",), 2.01, "collector CPU, 32 idle polled ports"),
        ("busy", ("p99",), 501, "hang-up → platform, 32 busy ports"),
        ("store", ("group", "orders_per_s"), 9869, "durable ingest, 100 orders per commit"),
        ("store", ("group", "cpu_us_per_order"), 100.1, "durable ingest, CPU per order"),
        ("drain", ("drain_orders_per_s",), 19999, "drain to the broker"),
        ("drain", ("ratio",), 29.9, "drain ÷ naive gmssl per-order publisher, same run"),
        ("drain", ("wire_payload_bytes_per_order",), 121, "bytes per order on the wire (payload)"),
        ("store", ("group", "file_bytes_per_order"), 301, "bytes per order on flash"),
        # 39 063 KiB = 40.0001 MB of 10^6 bytes: the stricter reading of 40 MB.
        ("soak", ("rss_steady_kb",), 39063, "RSS steady, 32 ports selling"),
        ("soak", ("rss_end_kb",), 40000, "RSS after the soak, and its growth"),
        ("startup", ("median", "ready_s"), 1.01, "start → READY=1 (sd_notify)"),
        ("relay", ("added_p99",), 2.001, "relay added latency"),
        # 1 954 KiB = 2.0009 MB of 10^6 bytes: not under 2 MB.
        ("charts", ("extra_rss_kb",), 1954, "dashboard charts, the page's extra RSS"),
        (
            "http",
            ("https", "wire_bytes_per_order"),
            120.1,
            "HTTPS wire bytes per order (heads included)",
        ),
        ("frames", ("protocols", "dart", "us_per_frame"), 50.1, "parse + build per frame, dart"),
        ("detect", ("passive", "seconds"), 15.1, "detect one port, passive (a POS polling)"),
        (
            "detect",
            ("active", "status"),
            "unknown",
            "detect one port, active (first setting, address 1)",
        ),
        (
            "detect",
            ("active_worst", "seconds"),
            30.1,
            "detect one port, active (last setting, top address)",
        ),
        ("detect", ("ports", "found_right"), 31, "detect 32 ports at once"),
        ("detect", ("ports", "wall_s"), 60.1, "detect 32 ports at once"),
    ],
)
def test_a_figure_past_its_goal_is_not_met_and_only_that_one(
    step: str, path: tuple[str, ...], value: float | str, figure: str
) -> None:
    data = results()
    target = data[step]
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    rows = by_figure(table.rows(data))
    assert rows[figure].met == table.NO
    assert [r.figure for r in rows.values() if r.met == table.NO] == [figure]


def test_a_failed_or_missing_bench_says_error_on_its_lines() -> None:
    data = results()
    data["drain"] = {"error": "exit 1 (log: test-artifacts/bench/drain.log)"}
    del data["relay"]
    data["soak"] = {"warmup_s": 30}  # a result without its figures
    rows = table.rows(data)
    errors = [r for r in rows if r.met == table.ERROR]
    assert len(errors) == 3 + 1 + 2
    assert all(table.ERROR not in r.measured for r in errors)
    got = by_figure(rows)
    assert got["drain to the broker"].measured.startswith("drain: exit 1")
    assert got["relay added latency"].measured == "relay: not run"
    assert "unreadable" in got["RSS steady, 32 ports selling"].measured


def test_markdown_and_text_hold_one_line_per_figure() -> None:
    rows = table.rows(results())
    md = table.markdown(rows).splitlines()
    assert md[0] == "| figure | measured | goal | met? |"
    assert len(md) == 2 + len(rows)
    assert md[2] == f"| {rows[0].figure} | {rows[0].measured} | {rows[0].goal} | yes |"
    assert len(table.text(rows).splitlines()) == 2 + len(rows)


def test_replace_block_rewrites_only_between_the_markers() -> None:
    doc = f"# Perf\nbefore\n{table.BEGIN}\nold table\n{table.END}\nafter\n"
    new = table.replace_block(doc, "| new |")
    assert new == f"# Perf\nbefore\n{table.BEGIN}\n| new |\n{table.END}\nafter\n"
    assert table.replace_block(new, "| newer |").count(table.BEGIN) == 1
    with pytest.raises(ValueError, match="markers"):
        table.replace_block("# no markers\n", "| x |")


def bench_json(*argv: str) -> dict[str, Any]:
    """Run a bench (tiny sizes) as bench/run.py does: its last stdout line is its JSON."""
    import json
    import subprocess

    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / argv[0]), *argv[1:], "--json"],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    result: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    return result


def test_the_benches_json_is_what_the_table_reads() -> None:
    """The JSON contract between the benches and the table, on real (tiny) runs
    of the fast ones: their figures come out as measured lines, not ERROR. No
    figure is compared with anything here; sizes are far too small to mean one."""
    got = {
        "store": bench_json("store.py", "--orders", "300", "--batch", "100", "--single", "20"),
        "frames": bench_json("frames.py", "--seconds", "5"),
        "drain": bench_json("drain.py", "--orders", "600", "--batch", "100", "--naive", "20"),
    }
    theirs = ("durable", "PUBACK", "drain", "bytes", "parse")
    rows = [r for r in table.rows(got) if r.figure.startswith(theirs)]
    assert len(rows) == 3 + 1 + 2 + 2 + len(table.PROTOCOLS)
    assert [r for r in rows if r.met == table.ERROR] == []
