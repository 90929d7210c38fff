"""`make bench`: every bench in one run, one table of figures beside their goals.

    .venv/bin/python bench/run.py [--quick] [--only idle,busy,...] [--note TEXT]
    .venv/bin/python bench/run.py --update-docs [test-artifacts/bench/latest.json]

Runs each bench of this folder as its own subprocess with ``--json`` (one
JSON object on its last stdout line, nothing scraped from text), one after
the other so they do not measure each other, then prints the table
(bench/table.py) and writes it, with every bench's JSON, the machine and the
load average before and after, to ``test-artifacts/bench/latest.json`` and
``latest.md`` (and a timestamped copy of the JSON). A bench's stderr goes to
``test-artifacts/bench/<step>.log``.

Full run: about 78 minutes, the 1 h RSS soak being most of it. ``--quick``:
shorter runs and a 2 min soak, about 13 minutes (the detect step is about
3 minutes either way).

``--update-docs``: rewrites the "Latest `make bench`" block of
docs/performance.md (between bench/table.py's markers) from a JSON written
here — run it after a run worth recording (``make bench-docs``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import table  # bench/table.py

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts" / "bench"
DOC = ROOT / "docs" / "performance.md"

#: Longest a bench may take before it is stopped and its rows say ERROR: the
#: soak's hour plus start-up and a margin for a loaded machine.
STEP_TIMEOUT_S = 5400

#: step → (script and arguments of the full run, of --quick). Orders and
#: rounds are sized so that each figure is stable to a few percent here; the
#: quick sizes keep every figure meaningful at about a third of the cost.
STEPS: dict[str, tuple[list[str], list[str]]] = {
    "startup": (["startup.py", "--runs", "5"], ["startup.py", "--runs", "3"]),
    "idle": (["ports32.py", "idle", "--seconds", "60"], ["ports32.py", "idle", "--seconds", "30"]),
    "busy": (
        ["ports32.py", "busy", "--orders", "20", "--rate", "0.2", "--fill-seconds", "1.5"],
        ["ports32.py", "busy", "--orders", "8", "--rate", "0.2", "--fill-seconds", "1.5"],
    ),
    "soak": (
        ["ports32.py", "soak", "--seconds", "3600", "--warmup", "60"],
        ["ports32.py", "soak", "--seconds", "120", "--warmup", "30"],
    ),
    "store": (
        ["store.py", "--orders", "50000", "--batch", "100"],
        ["store.py", "--orders", "20000", "--batch", "100", "--single", "1000"],
    ),
    "drain": (
        ["drain.py", "--orders", "50000", "--batch", "500", "--naive", "2000"],
        ["drain.py", "--orders", "20000", "--batch", "500", "--naive", "1000"],
    ),
    "readpath": (
        ["readpath.py", "--records", "250000", "--orders", "12"],
        ["readpath.py", "--records", "250000", "--orders", "6"],
    ),
    "relay": (["relay_latency.py", "--rounds", "5000"], ["relay_latency.py", "--rounds", "2000"]),
    "http": (
        ["http_drain.py", "--orders", "20000", "--checked", "2000"],
        ["http_drain.py", "--orders", "5000", "--checked", "500"],
    ),
    "charts": (
        ["charts.py", "--rows", "250000"],
        ["charts.py", "--rows", "250000", "--renders", "5"],
    ),
    "frames": (["frames.py", "--seconds", "600"], ["frames.py", "--seconds", "300"]),
    # About 3 min either way: the 32-port figure is the goal's own size.
    "detect": (["detect.py", "all"], ["detect.py", "all"]),
}


def machine() -> dict[str, Any]:
    """What the figures were measured on: CPU, cores, RAM, kernel, OS, Python."""
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or platform.machine(),
    )
    mem_kb = next(
        int(line.split()[1])
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal:")
    )
    os_name = ""
    release = Path("/etc/os-release")
    if release.exists():
        for line in release.read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                os_name = line.split("=", 1)[1].strip('"')
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "ram_gib": round(mem_kb / 2**20, 1),
        "kernel": platform.release(),
        "os": os_name,
        "python": platform.python_version(),
    }


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def commit() -> str:
    done = subprocess.run(
        ["git", "-C", str(ROOT), "describe", "--always", "--dirty"],
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout.strip() or "unknown"


def run_step(step: str, argv: list[str]) -> dict[str, Any]:
    """One bench as a subprocess; its last stdout line is its JSON result."""
    log = ARTIFACTS / f"{step}.log"
    command = [sys.executable, str(ROOT / "bench" / argv[0]), *argv[1:], "--json"]
    began = time.monotonic()
    with log.open("w") as err:
        try:
            done = subprocess.run(
                command, cwd=ROOT, stdout=subprocess.PIPE, stderr=err, text=True,
                timeout=STEP_TIMEOUT_S, check=False,
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            return {"error": f"timed out after {STEP_TIMEOUT_S} s (log: {log})"}
    elapsed = round(time.monotonic() - began, 1)
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    if done.returncode != 0 or not lines:
        return {"error": f"exit {done.returncode} (log: {log})", "wall_s": elapsed}
    try:
        result = json.loads(lines[-1])
    except json.JSONDecodeError:
        return {"error": f"last line is not JSON (log: {log})", "wall_s": elapsed}
    return {**result, "wall_s": elapsed, "command": " ".join(["bench/" + argv[0], *argv[1:]])}


def docs_block(report: dict[str, Any]) -> str:
    """The "Latest `make bench`" block of docs/performance.md, from a report."""
    m = report["machine"]
    rows = [table.Row(**r) for r in report["rows"]]
    make = "make bench QUICK=1" if report["quick"] else "make bench"
    script = "bench/run.py --quick" if report["quick"] else "bench/run.py"
    if report.get("only"):
        make, script = f"{make} ONLY={report['only']}", f"{script} --only {report['only']}"
    return "\n".join(
        [
            f"Command: `{make}` (`{script}`), {report['started']} UTC, "
            f"commit {report['commit']}, {report['wall_min']:.0f} min.",
            f"Machine: {m['cpu']}, {m['cores']} cores, {m['ram_gib']} GiB RAM, "
            f"{m['os']}, kernel {m['kernel']}, Python {m['python']}.",
            f"Load average (1/5/15 min) at the start {report['load_start']}, "
            f"at the end {report['load_end']}. {report.get('note', '')}".rstrip(),
            "",
            table.markdown(rows),
        ]
    )


def update_docs(path: Path) -> None:
    report = json.loads(path.read_text())
    DOC.write_text(table.replace_block(DOC.read_text(), docs_block(report)))
    print(f"{DOC.relative_to(ROOT)}: Latest `make bench` block written from {path}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="short runs, a 2 min soak")
    parser.add_argument("--only", help="comma-separated steps: " + ",".join(STEPS))
    parser.add_argument("--note", default="", help="a line for the docs (e.g. the machine's load)")
    parser.add_argument("--update-docs", nargs="?", const=ARTIFACTS / "latest.json", type=Path)
    args = parser.parse_args()
    if args.update_docs is not None:
        update_docs(args.update_docs)
        return 0
    steps = list(STEPS) if not args.only else args.only.split(",")
    unknown = [s for s in steps if s not in STEPS]
    if unknown:
        parser.error(f"unknown steps {unknown}; known: {list(STEPS)}")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    started = datetime.now(UTC)
    report: dict[str, Any] = {
        "quick": args.quick,
        "command": " ".join(["bench/run.py", *sys.argv[1:]]),
        "only": args.only or "",
        "started": started.strftime("%Y-%m-%d %H:%M"),
        "commit": commit(),
        "machine": machine(),
        "load_start": loadavg(),
        "note": args.note,
        "results": {},
    }
    began = time.monotonic()
    for step in steps:
        argv = STEPS[step][1 if args.quick else 0]
        print(f"[{time.monotonic() - began:6.0f} s] {step}: bench/{' '.join(argv)}", flush=True)
        report["results"][step] = run_step(step, argv)
    report["load_end"] = loadavg()
    report["wall_min"] = round((time.monotonic() - began) / 60, 1)
    rows = table.rows(report["results"])
    report["rows"] = [
        {"figure": r.figure, "measured": r.measured, "goal": r.goal, "met": r.met} for r in rows
    ]
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    for name in ("latest.json", f"bench-{stamp}.json"):
        (ARTIFACTS / name).write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    (ARTIFACTS / "latest.md").write_text(docs_block(report) + "\n")
    m = report["machine"]
    print()
    print(f"{m['cpu']}, {m['cores']} cores, {m['ram_gib']} GiB, Python {m['python']}; ", end="")
    print(f"load {report['load_start']} → {report['load_end']}; {report['wall_min']} min")
    print(table.text(rows))
    print(f"\nwritten: {ARTIFACTS.relative_to(ROOT)}/latest.json, latest.md")
    failed = [r for r in rows if r.met == table.ERROR]
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
