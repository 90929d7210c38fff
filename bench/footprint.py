"""Where the collector's memory and start-up time go, measured on the running daemon.

    .venv/bin/python bench/footprint.py station [--ports 32] [--settle 20] [--trace]
        [--selling RATE --baseline S]
    .venv/bin/python bench/footprint.py imports MODULE [MODULE ...]
    .venv/bin/python bench/footprint.py chain MODULE [MODULE ...]

``station``: the 32-port idle station of bench/startup.py (real mosquitto,
dispenser simulators on ptys), the collector started as ``forecourt run``
through :mod:`bench.footprint_probe`, which runs the real CLI in-process and,
after ``--settle`` seconds, writes a report and stops the daemon with
SIGTERM. The report: VmRSS / RssAnon / RssFile, resident kB per mapped file
(/proc/self/smaps: the interpreter, libcrypto, each extension module), the
loaded top-level packages, and with ``--trace`` the live Python heap by
package (tracemalloc started before the first import; tracing itself
inflates RSS, so read its sizes, not the RSS of that run). ``--selling RATE``:
every simulator sells (RATE sales/s each) for the whole run; with
``--trace --baseline S``, a snapshot at S seconds and the lines whose live
memory grew most from then to the report (a soak's growth, by line).

``chain``: the modules imported in order in one interpreter, each line what
that import added to RSS (the marginal cost in the daemon's import order).

``imports``: for each module, a fresh interpreter imports it alone and
reports what RSS / RssAnon / RssFile grew by and ``-X importtime``'s total.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hil import stack, station

PROBE = Path(__file__).resolve().parent / "footprint_probe.py"

#: The child's own memory from /proc/self/status, KiB (both scripts below).
_MEM = """
def mem():
    out = {}
    for line in open('/proc/self/status'):
        key, _, value = line.partition(':')
        if key in ('VmRSS', 'RssAnon', 'RssFile'):
            out[key] = int(value.split()[0])
    return out
"""

_ONE_IMPORT = (
    _MEM
    + """
import sys, importlib, json
before = mem()
importlib.import_module(sys.argv[1])
after = mem()
print(json.dumps({k + '_kb': after[k] - before[k] for k in after} | {'total_kb': after['VmRSS']}))
"""
)


_CHAIN = (
    _MEM
    + """
import sys, importlib, json, time
last = mem()
first = {'module': '(interpreter)', 'total_kb': last['VmRSS'], 'modules': len(sys.modules)}
print(json.dumps(first))
for name in sys.argv[1:]:
    began = time.perf_counter()
    importlib.import_module(name)
    ms = round(1000 * (time.perf_counter() - began), 1)
    now = mem()
    print(json.dumps({'module': name, **{k + '_kb': now[k] - last[k] for k in now},
                      'total_kb': now['VmRSS'], 'modules': len(sys.modules), 'import_ms': ms}))
    last = now
"""
)


def chain(modules: list[str]) -> None:
    """Import ``modules`` in order in one interpreter: what each adds to what came before."""
    subprocess.run([sys.executable, "-c", _CHAIN, *modules], check=True, cwd=stack.ROOT)


def imports(modules: list[str]) -> None:
    for module in modules:
        out = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", _ONE_IMPORT, module],
            capture_output=True, text=True, check=True, cwd=stack.ROOT,
        )  # fmt: skip
        # importtime lines: "import time: self | cumulative | name"; the last is the module.
        rows = [line for line in out.stderr.splitlines() if line.startswith("import time:")]
        cumulative_us = sum(int(row.split("|")[0].split(":")[1]) for row in rows[1:])
        print(
            json.dumps(
                {"module": module, **json.loads(out.stdout), "import_ms": cumulative_us // 1000}
            )
        )


def station_report(
    ports: int,
    settle_s: float,
    trace: bool,
    importtime: Path | None,
    profile: Path | None,
    selling: float = 0.0,
    baseline_s: float = 0.0,
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        broker = stack.Mosquitto(work / "broker")
        broker.start()
        orders = int(settle_s * selling) + 10 if selling else 0
        sims = station.start_dispensers(work, ports, orders=orders, rate=selling or 0.1)
        config = station.write_config(
            work / "station.toml", work, broker.port, ports, poll_interval_ms=200
        )
        report = work / "report.json"
        env = {
            **os.environ,
            "FOOTPRINT_REPORT": str(report),
            "FOOTPRINT_SETTLE_S": str(settle_s),
            "FOOTPRINT_TRACE": "1" if trace else "",
            "FOOTPRINT_BASELINE_S": str(baseline_s) if baseline_s else "",
        }
        if importtime is not None:
            env["PYTHONPROFILEIMPORTTIME"] = "1"
        if profile is not None:
            env["FOOTPRINT_PROFILE"] = str(profile)
        argv = [sys.executable, str(PROBE), "run", "--config", str(config),
                "--set", f"control.socket={work / 'control.sock'}"]  # fmt: skip
        try:
            with open(work / "collector.log", "w") as log:
                subprocess.run(argv, env=env, stderr=log, timeout=settle_s + 120, cwd=stack.ROOT)
        finally:
            for sim in sims.values():
                sim.stop()
            broker.stop()
        if importtime is not None:
            log_lines = (work / "collector.log").read_text().splitlines()
            importtime.write_text("\n".join(x for x in log_lines if x.startswith("import time:")))
        if not report.exists():
            print((work / "collector.log").read_text()[-3000:], file=sys.stderr)
            raise SystemExit("the probe wrote no report")
        data = json.loads(report.read_text())
        data["loadavg"] = Path("/proc/loadavg").read_text().split()[0]
        print(json.dumps(data, indent=1))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="mode", required=True)
    s = sub.add_parser("station")
    s.add_argument("--ports", type=int, default=32)
    s.add_argument("--settle", type=float, default=20.0)
    s.add_argument("--trace", action="store_true")
    s.add_argument("--importtime", type=Path, metavar="FILE", help="write -X importtime here")
    s.add_argument(
        "--profile", type=Path, metavar="PREFIX",
        help="pyinstrument of start-up: PREFIX.validate.txt, PREFIX.daemon.txt (to READY=1)",
    )  # fmt: skip
    s.add_argument("--selling", type=float, default=0.0, metavar="RATE")
    s.add_argument("--baseline", type=float, default=0.0, metavar="S")
    i = sub.add_parser("imports")
    i.add_argument("modules", nargs="+")
    c = sub.add_parser("chain")
    c.add_argument("modules", nargs="+")
    args = p.parse_args()
    if args.mode == "station":
        station_report(
            args.ports, args.settle, args.trace, args.importtime, args.profile,
            args.selling, args.baseline,
        )  # fmt: skip
    elif args.mode == "chain":
        chain(args.modules)
    else:
        imports(args.modules)


if __name__ == "__main__":
    main()
