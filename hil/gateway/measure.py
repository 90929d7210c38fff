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
E. (``sm4``, not in the default run: A includes it) the seal benchmark
   alone on a one-port box.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path
from typing import Any

from hil.gateway import image
from hil.gateway.rig import Rig, percentile
from hil.gateway.vm import Gateway

STORE = image.STORE
SQL = f"runuser -u forecourt -- sqlite3 {STORE}"
PYTHON = "/var/lib/forecourt/ota/current/venv/bin/python"

#: The seal benchmark in the guest, run with the daemon stopped (it would
#: take the core's other share). The back-end is loaded and self-tested
#: before the clock starts: :func:`uplink.crypto.backend` runs four GCM
#: calls on its first use, which an earlier version of this benchmark
#: timed as if they were seals. Each back-end for two seconds per size: 1 KiB
#: (a batch of two orders) and 16 KiB (a backlog batch of ~50); wall time
#: and the process's CPU time, MB/s and µs per seal. ``load_s``: the first
#: use (libcrypto loaded through ctypes, the self-test's four GCM calls).
SM4_BENCH = """
import json, time
from uplink import crypto
from uplink.sm4_cryptography import Sm4Cryptography
w0 = time.perf_counter()
picked, why = crypto.backend_name()
out = {"picked": picked, "why": why, "load_s": round(time.perf_counter() - w0, 3)}
key, nonce, aad = bytes(16), bytes(12), b"aad"
for name, backend in ((picked, crypto.backend()), ("cryptography", Sm4Cryptography())):
    for size in (1024, 16384):
        body = bytes(size)
        backend.seal(key, nonce, body, aad)
        n, w0, c0 = 0, time.perf_counter(), time.process_time()
        while time.perf_counter() - w0 < 2.0:
            backend.seal(key, nonce, body, aad)
            n += 1
        wall, cpu = time.perf_counter() - w0, time.process_time() - c0
        out[f"{name}_{size}"] = {"seals": n, "MB_s_wall": round(n * size / wall / 1e6, 3),
                                 "MB_s_cpu": round(n * size / max(cpu, 1e-6) / 1e6, 3),
                                 "us_per_seal_cpu": round(cpu / n * 1e6)}
print(json.dumps(out))
"""


def host_load() -> float:
    """The host's 1-minute load average, recorded beside every time figure:
    TCG time is the host's time, and other suites share its two cores."""
    return round(os.getloadavg()[0], 2)


def save_journal(gw: Gateway) -> None:
    with contextlib.suppress(Exception):
        gw.save_journal()


def daemon_status(gw: Gateway, pid: int) -> dict[str, int]:
    out = gw.check(f"cat /proc/{pid}/status")
    wanted = ("VmRSS", "RssAnon", "RssFile", "VmHWM")
    return {k: int(v.split()[0]) for k, v in (x.split(":", 1) for x in out.splitlines()
                                              if ":" in x) if k in wanted}  # fmt: skip


def cpu_share(gw: Gateway, pid: int, seconds: float) -> dict[str, float]:
    """The daemon's utime+stime over ``seconds`` of the guest's clock, in % of
    the emulated core (``guest_pct``), beside the host CPU qemu got in the
    same window, in % of one host core (``qemu_host_pct``). The guest's clock
    is the host's: when the host does not run qemu the guest's time goes on
    and the daemon is charged for it, so a ``guest_pct`` whose
    ``qemu_host_pct`` is well below 100 while the guest was busy is inflated
    by the host's load, not spent by the daemon."""
    command = (f"a=$(awk '{{print $14+$15}}' /proc/{pid}/stat); t=$(cut -d' ' -f1 /proc/uptime);"
               f" sleep {seconds}; b=$(awk '{{print $14+$15}}' /proc/{pid}/stat);"
               " u=$(cut -d' ' -f1 /proc/uptime); echo $a $b $t $u $(getconf CLK_TCK)")  # fmt: skip
    host0, wall0 = qemu_cpu_s(gw), time.monotonic()
    a, b, t0, t1, hz = gw.check(command, timeout=seconds + 120).split()
    host1, wall1 = qemu_cpu_s(gw), time.monotonic()
    return {
        "guest_pct": round(100 * (int(b) - int(a)) / int(hz) / (float(t1) - float(t0)), 2),
        "qemu_host_pct": round(100 * (host1 - host0) / (wall1 - wall0), 1),
    }


def qemu_cpu_s(gw: Gateway) -> float:
    """The qemu process's CPU time on the host (all its threads), in seconds."""
    assert gw.proc is not None
    fields = Path(f"/proc/{gw.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


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


#: What the journal says when the unit's process ended: the watchdog, the
#: OOM killer, an exit status or a signal, a traceback.
ENDINGS = ("Watchdog timeout", "watchdog_skipped", "oom", "Out of memory", "Killed process",
           "Main process exited", "Failed with result", "Traceback", "UNCLEAN_STOP",
           "Scheduled restart")  # fmt: skip


def restarts(gw: Gateway) -> dict[str, Any]:
    """The unit's restarts so far and, when there were any, the journal's lines on why."""
    n = gw.boot_figures()["restarts"]
    found: dict[str, Any] = {"restarts": n}
    if n:
        _rc, text = gw.sh("journalctl --no-pager -o short-monotonic -b 0", timeout=300)
        found["why"] = [x[:400] for x in text.splitlines() if any(e in x for e in ENDINGS)][:40]
    return found


def phase_idle(work: Path, quick: bool, result: dict[str, Any]) -> dict[str, Any]:
    rig = Rig(work / "a-idle32", pumps=32, orders_per_pump=0, rate=0.1, persistent_journal=True)
    gw = rig.gateway
    result["host_load"] = {"begin": host_load()}
    try:
        gw.boot()
        gw.wait_shell()
        gw.wait_ready()
        result["at_boot"] = gw.boot_figures()
        result["host_load"]["at_boot"] = host_load()
        pid = result["at_boot"]["pid"]
        time.sleep(20 if quick else 60)  # settled: every port polled at the idle interval
        result["cpu_32_idle_pct"] = cpu_share(gw, pid, 20 if quick else 60)
        result["host_load"]["cpu_32_idle"] = host_load()
        result["rss_32_idle_kb"] = daemon_status(gw, pid)
        result["started_line"] = started_line(gw)
        result.update(restarts(gw))
        gw.check("systemctl stop forecourt-collector", timeout=300)
        sm4 = gw.check(f"cd /tmp && {PYTHON} -I - <<'EOF'\n{SM4_BENCH}\nEOF", timeout=600)
        result["sm4_seal"] = json.loads(sm4.strip().splitlines()[-1])
        result["host_load"]["sm4_seal"] = host_load()
        gw.check("rm -rf /var/cache/forecourt/*")
        result["start_to_ready_no_cache_s"] = timed_start(gw)
        result["host_load"]["start_no_cache"] = host_load()
        result["start_to_ready_cached_s"] = [timed_start(gw) for _ in range(1 if quick else 3)]
        result["host_load"]["start_cached"] = host_load()
        result["free"] = gw.check("free -k")
        gw.poweroff()
        return result
    finally:
        rig.stop()


def phase_sm4(work: Path, result: dict[str, Any]) -> dict[str, Any]:
    """The seal benchmark alone: one idle port, the unit stopped (a few minutes)."""
    rig = Rig(work / "e-sm4", pumps=1, orders_per_pump=0, rate=0.1)
    gw = rig.gateway
    result["host_load"] = {"begin": host_load()}
    try:
        gw.boot()
        gw.wait_shell()
        gw.wait_ready()
        result["started_line"] = started_line(gw)
        gw.check("systemctl stop forecourt-collector", timeout=300)
        sm4 = gw.check(f"cd /tmp && {PYTHON} -I - <<'EOF'\n{SM4_BENCH}\nEOF", timeout=600)
        result["sm4_seal"] = json.loads(sm4.strip().splitlines()[-1])
        result["host_load"]["sm4_seal"] = host_load()
        gw.poweroff()
        return result
    finally:
        rig.stop()


def phase_selling(work: Path, quick: bool, result: dict[str, Any]) -> dict[str, Any]:
    sell_s = 90 if quick else 150
    rate = 0.08  # per pump: 32 pumps ≈ 2.6 sales/s, a very busy forecourt
    rig = Rig(work / "b-sell32", pumps=32, orders_per_pump=int((sell_s * 3 + 300) * rate),
              rate=rate, persistent_journal=True)  # fmt: skip
    gw = rig.gateway
    result["host_load"] = {"begin": host_load()}
    try:
        gw.boot()
        gw.wait_shell()
        gw.wait_ready()
        result["at_boot"] = gw.boot_figures()
        ready_at = time.time()
        time.sleep(sell_s)
        result["host_load"]["selling"] = host_load()
        result.update(restarts(gw))
        pid = gw.boot_figures()["pid"]
        result["rss_32_selling_kb"] = daemon_status(gw, pid)
        # Sales hung up once the backlog of the boot is read (30 s after READY).
        lat = rig.latencies(since=ready_at + 30)
        result["hangup_to_platform_s"] = {
            "n": len(lat), "p50": round(percentile(lat, 0.5), 2),
            "p99": round(percentile(lat, 0.99), 2), "max": round(max(lat, default=0), 2),
        }  # fmt: skip
        result["cpu_32_selling_pct"] = cpu_share(gw, pid, 30)
        result["host_load"]["cpu_32_selling"] = host_load()
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
        result["host_load"]["ingest"] = host_load()
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
        result["host_load"]["drain"] = host_load()
        result["end"] = restarts(gw)
        gw.poweroff()
        return result
    finally:
        rig.stop()


def phase_eight(work: Path, memory_mb: int, run_s: float, result: dict[str, Any]) -> dict[str, Any]:
    rate = 0.1
    orders = max(4, int(run_s * rate * 0.9))
    rig = Rig(work / f"c-sell8-{memory_mb}mb", 8, orders, rate, memory_mb=memory_mb,
              persistent_journal=True)  # fmt: skip
    gw = rig.gateway
    result.update(memory_mb=memory_mb, host_load={"begin": host_load()})
    try:
        began = time.monotonic()
        gw.boot()
        gw.wait_shell()
        gw.wait_ready()
        result["at_boot"] = gw.boot_figures()
        pid = result["at_boot"]["pid"]
        time.sleep(max(0.0, run_s - (time.monotonic() - began)))
        result.update(restarts(gw))
        figures = gw.boot_figures()
        result["rss_8_selling_kb"] = daemon_status(gw, figures["pid"])
        result["host_load"]["selling"] = host_load()
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


def measure(
    work: Path, quick: bool = False, phases: tuple[str, ...] = PHASES, max_load: float = 0.0
) -> dict[str, Any]:
    """The phases in order; each phase's figures kept even when a later step of
    it fails (a restart mid-phase, a boot that never answers). ``max_load``:
    before each phase wait (up to :data:`QUIET_WAIT_S`) for the host's 1-minute
    load to fall below it (0: do not wait)."""
    began = time.monotonic()
    result: dict[str, Any] = {"note": "TCG is an estimate of a slow ARM, not a real ARM"}
    steps = {
        "idle32": lambda r: phase_idle(work, quick, r),
        "selling32": lambda r: phase_selling(work, quick, r),
        "selling8_128mb": lambda r: phase_eight(work, 128, 120 if quick else 240, r),
        "selling8_64mb": lambda r: phase_eight(work, 64, 180 if quick else 600, r),
        "sm4": lambda r: phase_sm4(work, r),
    }
    for name, step in steps.items():
        if name not in phases:
            continue
        figures: dict[str, Any] = {}
        result[name] = figures
        if max_load:
            figures["waited_for_quiet_s"] = wait_quiet(max_load)
        try:
            step(figures)
        except (TimeoutError, RuntimeError, ConnectionError) as exc:
            figures["failed"] = f"{type(exc).__name__}: {str(exc)[:300]}"
            console = work / phase_dir(name) / "console.log"
            if console.exists():
                text = console.read_text(errors="replace")
                figures["console"] = [x for x in text.splitlines()
                                      if "Out of memory" in x or "panic" in x][:20]  # fmt: skip
        (work / f"{name}.json").write_text(json.dumps(figures, indent=1, default=str))
    result["minutes"] = round((time.monotonic() - began) / 60, 1)
    return result


#: How long :func:`measure` waits for a quiet host before a phase.
QUIET_WAIT_S = 1800


def wait_quiet(max_load: float) -> float:
    """Seconds waited until the host's 1-minute load was below ``max_load``."""
    began = time.monotonic()
    while os.getloadavg()[0] >= max_load and time.monotonic() - began < QUIET_WAIT_S:
        time.sleep(10)
    return round(time.monotonic() - began)


def phase_dir(name: str) -> str:
    return {"idle32": "a-idle32", "selling32": "b-sell32", "selling8_128mb": "c-sell8-128mb",
            "selling8_64mb": "c-sell8-64mb", "sm4": "e-sm4"}[name]  # fmt: skip
