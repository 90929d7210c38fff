"""The figures of docs/performance.md, "The gateway": the product in the emulated box.

TCG is an estimate of a slow ARM, not a real ARM: every figure here is what
the daemon did on a Cortex-A7 emulated by qemu-system-arm on a busy x86
core, good for comparing the product with itself and with its budget.

Phases, each a fresh boot of the same image (the store new each time):

A. 128 MB, 32 idle dispensers: the unit's start at boot (first start: no
   validated-config cache), ``systemctl start`` → READY without and with the
   cache, CPU of 32 idle polled ports over a minute (the daemon's
   utime+stime as a share of the emulated core), RSS idle, the SM4 back-end
   the daemon named in its ``started`` line and its seal throughput.
B. 128 MB, 32 dispensers selling: hang-up → platform p50/p99 and RSS while
   selling; ingest (the unit stopped while the pumps sell, then started:
   the backlog read off the pumps and committed, per second); drain (the
   broker stopped while selling, then started: unsent records to zero, per
   second).
C. 128 MB, 8 dispensers selling: RSS.
D. 64 MB, 8 dispensers selling for the run: restarts, OOM kills, swap,
   memory pressure, major faults, every sale stored and delivered.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from hil.gateway import image
from hil.gateway.rig import Rig, percentile
from hil.gateway.vm import Gateway

STORE = image.STORE
SQL = f"runuser -u forecourt -- sqlite3 {STORE}"
PYTHON = "/var/lib/forecourt/ota/current/venv/bin/python"

#: The seal benchmark in the guest: the back-end uplink/crypto.py picks, 1 KiB
#: records (a batch of a few orders) for two seconds.
SM4_BENCH = (
    "import time\n"
    "from uplink.crypto import backend_name, sm4_gcm_seal\n"
    "key, nonce, aad, body = bytes(16), bytes(12), b'aad', bytes(1024)\n"
    "n, t0 = 0, time.perf_counter()\n"
    "while time.perf_counter() - t0 < 2.0:\n"
    "    sm4_gcm_seal(key, nonce, body, aad); n += 1\n"
    "dt = time.perf_counter() - t0\n"
    "print(backend_name()[0], round(n * 1024 / dt / 1e6, 3), round(dt / n * 1e6))\n"
)


def daemon_status(gw: Gateway, pid: int) -> dict[str, int]:
    out = gw.check(f"cat /proc/{pid}/status")
    wanted = ("VmRSS", "RssAnon", "RssFile", "VmHWM")
    return {k: int(v.split()[0]) for k, v in (x.split(":", 1) for x in out.splitlines()
                                              if ":" in x) if k in wanted}  # fmt: skip


def cpu_share(gw: Gateway, pid: int, seconds: float) -> float:
    """The daemon's utime+stime over ``seconds`` of the guest's clock, in % of the core."""
    command = (f"a=$(awk '{{print $14+$15}}' /proc/{pid}/stat); t=$(cut -d' ' -f1 /proc/uptime);"
               f" sleep {seconds}; b=$(awk '{{print $14+$15}}' /proc/{pid}/stat);"
               " u=$(cut -d' ' -f1 /proc/uptime); echo $a $b $t $u $(getconf CLK_TCK)")  # fmt: skip
    a, b, t0, t1, hz = gw.check(command, timeout=seconds + 120).split()
    return round(100 * (int(b) - int(a)) / int(hz) / (float(t1) - float(t0)), 2)


def timed_start(gw: Gateway) -> float:
    out = gw.check("systemctl stop forecourt-collector; a=$(date +%s%N);"
                   " systemctl start forecourt-collector; b=$(date +%s%N);"
                   " echo $(( (b - a) / 1000000 ))", timeout=900)  # fmt: skip
    return int(out.split()[-1]) / 1000


def count(gw: Gateway, where: str) -> int:
    return int(gw.check(f'{SQL} "SELECT count(*) FROM records WHERE {where}"').split()[-1])


def started_line(gw: Gateway) -> str:
    lines = [x for x in gw.journal(2000).splitlines() if '"started"' in x]
    return lines[-1] if lines else ""


def phase_idle(work: Path, quick: bool) -> dict[str, Any]:
    rig = Rig(work / "a-idle32", pumps=32, orders_per_pump=0, rate=0.1)
    gw = rig.gateway
    try:
        gw.boot()
        gw.wait_shell()
        gw.wait_ready()
        result: dict[str, Any] = {"at_boot": gw.boot_figures()}
        pid = result["at_boot"]["pid"]
        time.sleep(20 if quick else 60)  # settled: every port polled at the idle interval
        result["cpu_32_idle_pct"] = cpu_share(gw, pid, 20 if quick else 60)
        result["rss_32_idle_kb"] = daemon_status(gw, pid)
        result["started_line"] = started_line(gw)
        result["sm4_seal"] = gw.check(f'cd /tmp && {PYTHON} -I -c "{SM4_BENCH}"', timeout=300)
        gw.check("rm -rf /var/cache/forecourt/*")
        result["start_to_ready_no_cache_s"] = timed_start(gw)
        result["start_to_ready_cached_s"] = [timed_start(gw) for _ in range(1 if quick else 3)]
        result["free"] = gw.check("free -k")
        gw.poweroff()
        return result
    finally:
        rig.stop()


def phase_selling(work: Path, quick: bool) -> dict[str, Any]:
    sell_s = 90 if quick else 150
    rate = 0.08  # per pump: 32 pumps ≈ 2.6 sales/s, a very busy forecourt
    rig = Rig(work / "b-sell32", pumps=32, orders_per_pump=int((sell_s * 3 + 300) * rate),
              rate=rate)  # fmt: skip
    gw = rig.gateway
    try:
        gw.boot()
        gw.wait_shell()
        gw.wait_ready()
        pid = gw.boot_figures()["pid"]
        ready_at = time.time()
        time.sleep(sell_s)
        result: dict[str, Any] = {"rss_32_selling_kb": daemon_status(gw, pid)}
        # Sales hung up once the backlog of the boot is read (30 s after READY).
        lat = rig.latencies(since=ready_at + 30)
        result["hangup_to_platform_s"] = {
            "n": len(lat), "p50": round(percentile(lat, 0.5), 2),
            "p99": round(percentile(lat, 0.99), 2), "max": round(max(lat, default=0), 2),
        }  # fmt: skip
        result["cpu_32_selling_pct"] = cpu_share(gw, pid, 30)
        # Ingest: the unit stopped while the pumps keep selling, then the backlog.
        rig.broker.stop()
        gw.check("systemctl stop forecourt-collector")
        time.sleep(45 if quick else 90)
        before = count(gw, "kind='order'")
        made = len(rig.truth())
        gw.check("systemctl start forecourt-collector", timeout=900)
        began, samples = time.time(), []
        while time.time() - began < 240:
            samples.append((time.time(), count(gw, "kind='order'")))
            if samples[-1][1] >= made and len(samples) > 1:
                break
            time.sleep(2)
        backlog = made - before
        first_t = next((t for t, c in samples if c > before), began)
        done_t = next((t for t, c in samples if c >= made), samples[-1][0])
        took = max(done_t - first_t, 0.1)
        result["ingest"] = {
            "backlog": backlog,
            "stored_after_start": samples[-1][1] - before,
            "seconds": round(took, 1),
            "orders_per_s": round(backlog / took, 2),
        }
        # Drain: the broker has been down since; let unsent records pile up a bit more.
        time.sleep(30 if quick else 60)
        unsent = count(gw, "sent_ms IS NULL")
        rig.broker.start()
        began = time.time()
        while count(gw, "sent_ms IS NULL") > 0 and time.time() - began < 600:
            time.sleep(1)
        drained_s = time.time() - began
        result["drain"] = {"unsent": unsent, "seconds": round(drained_s, 1),
                           "records_per_s": round(unsent / max(drained_s, 0.1), 1)}  # fmt: skip
        result["restarts"] = gw.boot_figures()["restarts"]
        gw.poweroff()
        return result
    finally:
        rig.stop()


def phase_eight(work: Path, memory_mb: int, run_s: float) -> dict[str, Any]:
    rate = 0.1
    orders = max(4, int(run_s * rate * 0.9))
    rig = Rig(work / f"c-sell8-{memory_mb}mb", 8, orders, rate, memory_mb=memory_mb)
    gw = rig.gateway
    try:
        began = time.monotonic()
        gw.boot()
        gw.wait_shell()
        gw.wait_ready()
        result: dict[str, Any] = {"memory_mb": memory_mb, "at_boot": gw.boot_figures()}
        pid = result["at_boot"]["pid"]
        time.sleep(max(0.0, run_s - (time.monotonic() - began)))
        figures = gw.boot_figures()
        result["restarts"] = figures["restarts"]
        result["rss_8_selling_kb"] = daemon_status(gw, figures["pid"])
        result["same_pid"] = figures["pid"] == pid
        stat = gw.check(f"cat /proc/{figures['pid']}/stat").split()
        result["major_faults"] = int(stat[11])
        result["oom"] = gw.sh("dmesg | grep -i -E 'out of memory|oom-kill|killed process'")[1]
        result["swap"] = gw.check("grep -E 'SwapTotal|SwapFree' /proc/meminfo")
        result["pressure"] = gw.sh("cat /proc/pressure/memory")[1]
        cgroup = "/sys/fs/cgroup/system.slice/forecourt-collector.service"
        result["cgroup_peak"] = gw.sh(f"cat {cgroup}/memory.peak")[1]
        result["meminfo"] = gw.check("grep -E 'MemTotal|MemAvailable' /proc/meminfo")
        result["sales"] = len(rig.truth())
        result["stored"] = count(gw, "kind='order'")
        result["run_s"] = round(time.monotonic() - began)
        gw.poweroff()
        return result
    finally:
        rig.stop()


PHASES = ("idle32", "selling32", "selling8_128mb", "selling8_64mb")


def measure(work: Path, quick: bool = False, phases: tuple[str, ...] = PHASES) -> dict[str, Any]:
    began = time.monotonic()
    result: dict[str, Any] = {"note": "TCG is an estimate of a slow ARM, not a real ARM"}
    steps = {
        "idle32": lambda: phase_idle(work, quick),
        "selling32": lambda: phase_selling(work, quick),
        "selling8_128mb": lambda: phase_eight(work, 128, 120 if quick else 240),
    }
    for name, step in steps.items():
        if name not in phases:
            continue
        try:
            result[name] = step()
        except (TimeoutError, RuntimeError, ConnectionError) as exc:
            # One phase failing (a restart mid-phase, a boot that never
            # answers) must not take the others' figures with it.
            result[name] = {"failed": f"{type(exc).__name__}: {str(exc)[:300]}"}
        (work / f"{name}.json").write_text(json.dumps(result[name], indent=1, default=str))
    if "selling8_64mb" in phases:
        try:
            result["selling8_64mb"] = phase_eight(work, 64, 180 if quick else 600)
        except (TimeoutError, RuntimeError, ConnectionError) as exc:
            console = work / "c-sell8-64mb" / "console.log"
            text = console.read_text(errors="replace") if console.exists() else ""
            result["selling8_64mb"] = {
                "failed": f"{type(exc).__name__}: {str(exc)[:300]}",
                "console": [x for x in text.splitlines()
                            if "Out of memory" in x or "panic" in x][:20],
            }  # fmt: skip
    result["minutes"] = round((time.monotonic() - began) / 60, 1)
    return result
