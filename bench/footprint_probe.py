"""``forecourt`` run in-process, with a report of its memory after it settled.

Started by bench/footprint.py as ``python bench/footprint_probe.py run …``
with FOOTPRINT_REPORT (output JSON path), FOOTPRINT_SETTLE_S, FOOTPRINT_TRACE,
FOOTPRINT_BASELINE_S (with a trace: a first snapshot then, and the report
lists the lines whose live memory grew most since) and FOOTPRINT_PROFILE
set. The daemon is the real one (collector.cli.main, after the same
validate-and-exec step); a timer thread writes the report after the settle
time, then sends SIGTERM so the daemon stops as under systemd.
FOOTPRINT_PROFILE=PREFIX: pyinstrument of the validating step
(PREFIX.validate.txt) and of the daemon up to READY=1 (PREFIX.daemon.txt).
"""

from __future__ import annotations

import os
import sys

if os.environ.get("FOOTPRINT_TRACE"):
    import tracemalloc

    tracemalloc.start(1)  # before any import: every allocation is seen

import json
import signal
import threading
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

#: Mapped files below this many resident kB are summed as "other".
SMAPS_MIN_KB = 200


def _status() -> dict[str, int]:
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
            out[key + "_kb"] = int(value.split()[0])
    return out


def _smaps() -> dict[str, int]:
    """Resident kB per mapped file ([heap], [anon] and files)."""
    rss: Counter[str] = Counter()
    name = "[anon]"
    for line in Path("/proc/self/smaps").read_text().splitlines():
        fields = line.split()
        if not fields[0].endswith(":"):  # a mapping header: "addr-addr perms … path"
            name = fields[5] if len(fields) > 5 else "[anon]"
            name = name.split("site-packages/")[-1]
        elif fields[0] == "Rss:":
            rss[name] += int(fields[1])
    out = {k: v for k, v in rss.most_common() if v >= SMAPS_MIN_KB}
    out["other"] = sum(v for v in rss.values() if v < SMAPS_MIN_KB)
    return out


def _packages() -> dict[str, int]:
    """Top-level package → kB of the .pyc files of its loaded modules (code size)."""
    sizes: Counter[str] = Counter()
    for name, module in list(sys.modules.items()):
        cached = getattr(module, "__cached__", None)
        size = 0
        if cached and os.path.exists(cached):
            size = os.path.getsize(cached)
        sizes[name.split(".")[0]] += size
    return {k: v // 1024 for k, v in sizes.most_common()}


def _trace() -> dict[str, int]:
    import tracemalloc

    snapshot = tracemalloc.take_snapshot()
    by_package: Counter[str] = Counter()
    for stat in snapshot.statistics("filename"):
        path = stat.traceback[0].filename
        if "site-packages/" in path:
            key = path.split("site-packages/")[1].split("/")[0]
        elif "/lib/python3" in path:
            key = "stdlib:" + path.split("/lib/python3")[1].split("/")[1].removesuffix(".py")
        elif str(Path(__file__).resolve().parent.parent) in path:
            key = "project:" + path.split("/")[-2] + "/" + path.split("/")[-1]
        else:
            key = path
        by_package[key] += stat.size
    total = sum(by_package.values())
    out = {"traced_total_kb": total // 1024}
    out |= {k: v // 1024 for k, v in by_package.most_common(40)}
    return out


_baseline: list[object] = []


def _take_baseline() -> None:
    import tracemalloc

    _baseline.append(tracemalloc.take_snapshot())


def _growth() -> list[dict[str, object]]:
    """The lines whose live allocations grew most since the baseline snapshot."""
    import tracemalloc

    now = tracemalloc.take_snapshot()
    stats = now.compare_to(_baseline[0], "lineno")  # type: ignore[arg-type]
    root = str(Path(__file__).resolve().parent.parent) + "/"
    grown = sorted(stats, key=lambda stat: stat.size_diff, reverse=True)[:30]
    return [
        {
            "where": f"{stat.traceback[0].filename.replace(root, '')}:{stat.traceback[0].lineno}",
            "grew_kb": round(stat.size_diff / 1024, 1),
            "count_diff": stat.count_diff,
        }
        for stat in grown
    ]


def _report() -> None:
    report: dict[str, object] = {"status": _status(), "smaps_kb": _smaps()}
    report["pyc_kb_by_package"] = _packages()
    report["threads"] = len(os.listdir("/proc/self/task"))
    report["modules"] = len(sys.modules)
    if os.environ.get("FOOTPRINT_TRACE"):
        report["tracemalloc_kb"] = _trace()
        if _baseline:
            report["status_at_baseline"] = _baseline_status
            report["growth_since_baseline"] = _growth()
    Path(os.environ["FOOTPRINT_REPORT"]).write_text(json.dumps(report))
    os.kill(os.getpid(), signal.SIGTERM)


def _validate_and_exec(argv: list[str]) -> None:
    """What ``forecourt run`` does before the daemon: validate, exec with the views —
    exec'ing this probe again, so the report covers the daemon as it runs."""
    from collector import version
    from config.handoff import exec_daemon
    from config.loader import load_config

    config_at = argv.index("--config") + 1
    overrides = [argv[i + 1] for i, item in enumerate(argv) if item == "--set"]
    config = load_config(Path(argv[config_at]), overrides)
    exec_daemon(config, [__file__, *argv], version())


def _profile_until_ready(out: Path) -> None:
    """pyinstrument from here to READY=1 (the daemon's half of start-up), as text."""
    from pyinstrument import Profiler

    from collector.device import sdnotify

    profiler = Profiler(interval=0.0005)
    profiler.start()
    notify = sdnotify.notify

    def notify_and_stop(state: str) -> bool:
        if state == "READY=1" and profiler.is_running:
            profiler.stop()
            out.write_text(profiler.output_text(unicode=True, show_all=False))
        return notify(state)

    sdnotify.notify = notify_and_stop


if __name__ == "__main__":
    profile = os.environ.get("FOOTPRINT_PROFILE")
    if "--validated-fd" not in sys.argv:
        if profile:
            from pyinstrument import Profiler

            validating = Profiler(interval=0.0005)
            validating.start()

            from config import handoff

            exec_daemon = handoff.exec_daemon

            def profiled_exec(*args: object) -> None:
                validating.stop()
                Path(profile + ".validate.txt").write_text(
                    validating.output_text(unicode=True, show_all=False)
                )
                exec_daemon(*args)  # type: ignore[arg-type]

            handoff.exec_daemon = profiled_exec  # type: ignore[assignment]
        _validate_and_exec(sys.argv[1:])
    if profile:
        _profile_until_ready(Path(profile + ".daemon.txt"))
    threading.Timer(float(os.environ.get("FOOTPRINT_SETTLE_S", "20")), _report).start()
    _baseline_status: dict[str, int] = {}
    if os.environ.get("FOOTPRINT_TRACE") and os.environ.get("FOOTPRINT_BASELINE_S"):

        def _baseline_now() -> None:
            _baseline_status.update(_status())
            _take_baseline()

        threading.Timer(float(os.environ["FOOTPRINT_BASELINE_S"]), _baseline_now).start()
    from collector.cli import main

    raise SystemExit(main(sys.argv[1:]))
