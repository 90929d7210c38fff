"""True power cuts: SIGKILL qemu at random moments while dispensers sell and the uplink drains.

A SIGKILL of the collector (hil/torture.py) never loses the kernel's page
cache; a kill of qemu does, as a power cut does. The disk is
``cache=none`` on the host: every write the guest had completed is on the
host's disk (O_DIRECT, no host page cache in between), and everything the
guest still held in its own page cache — unsynced file data, dirty metadata,
requests in flight — is lost with the process. (``cache=unsafe`` or
``writeback`` would keep the guest's flushed-but-unsynced writes in the host
page cache, where they survive a kill of qemu: a gentler cut than a real
one. No mode models a disk that loses writes it had acknowledged.)

Each cycle: boot, wait for the unit's READY, ``PRAGMA integrity_check`` (as
the service user: a root connection would leave a root-owned ``-shm``),
every tenth boot ``forecourt verify`` in the guest, then a kill at a
uniformly random moment 2–15 s later (the downtime's sales being read off
the pumps and published). After the last cut: one more boot,
the dispensers finish, every sale must reach the receiver; then ``forecourt
verify`` and the export in the guest, a clean power-off and ``e2fsck -fn``
of the disk on the host.

Counted: cuts, sales, lost (a sale at no receiver), duplicates (one sale
under two rids), corrupt (a chain the receiver or ``verify`` breaks, an
integrity check not ``ok``, a field altered), and re-read: sales that were
complete on the dispenser before a cut but committed only after the next
boot (the dispenser still had them; poll mode read them again).
"""

from __future__ import annotations

import json
import random
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from hil import torture as host_torture
from hil.gateway import image
from hil.gateway.rig import Rig, percentile
from hil.gateway.vm import FORECOURT

#: Sales started per second per dispenser: a busy forecourt, and enough
#: that most cuts land with sales pending on the pumps.
RATE = 0.12
#: The kill comes this long after READY (uniform): sometimes mid-start of
#: the uplink, sometimes deep in selling and draining.
UP_S = (2.0, 15.0)
#: A boot under TCG with the unit's start: roughly, for sizing the sales.
CYCLE_S = 110.0
#: ``forecourt verify`` in the guest costs ≈ 10 s of TCG: every so many boots.
VERIFY_EVERY = 10
STORE = image.STORE
#: A file of this name in the run's directory ends the cuts early (the last
#: boot, the drain and every check still run): a host that must be freed.
STOP_FILE = "STOP"


def torture(work: Path, cuts: int, ports: int, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    orders = max(4, int(cuts * CYCLE_S * RATE))
    rig = Rig(work, pumps=ports, orders_per_pump=orders, rate=RATE, seed=seed)
    gw = rig.gateway
    log: list[dict[str, Any]] = []
    problems: list[str] = []
    began = time.monotonic()

    def check_store(cycle: dict[str, Any], verify: bool) -> None:
        rc, out = gw.sh(f"runuser -u forecourt -- sqlite3 {STORE} 'PRAGMA integrity_check'", 300)
        cycle["integrity"] = out.strip() if rc == 0 else f"exit {rc}: {out.strip()[-300:]}"
        if cycle["integrity"] != "ok":
            problems.append(f"boot {gw.boots}: integrity_check {cycle['integrity']}")
        if verify:
            rc, out = gw.sh(f"runuser -u forecourt -- {FORECOURT} verify --store {STORE}", 600)
            cycle["verify"] = "ok" if rc == 0 else f"exit {rc}: {out.strip()[-300:]}"
            if rc != 0:
                problems.append(f"boot {gw.boots}: verify {cycle['verify']}")

    try:
        for n in range(1, cuts + 2):
            cycle: dict[str, Any] = {"boot": n, "at": time.time()}
            gw.boot()
            gw.wait_shell()
            gw.wait_ready()
            cycle.update(gw.boot_figures())
            cycle["ready_at"] = time.time()
            check_store(cycle, verify=n % VERIFY_EVERY == 0)
            log.append(cycle)
            if n > cuts or (work / STOP_FILE).exists():
                break
            up = rng.uniform(*UP_S)
            time.sleep(max(0.0, cycle["ready_at"] + up - time.time()))
            cycle["cut_at"] = time.time()
            cycle["sales_made_by_cut"] = len(rig.truth())
            gw.kill()
            print(json.dumps({"cut": n, "up_s": round(up, 1), "sales": cycle["sales_made_by_cut"],
                              "restarts": cycle["restarts"], "integrity": cycle["integrity"]}),
                  flush=True)  # fmt: skip
        # The last boot: the dispensers finish, everything drains.
        total = ports * orders
        deadline = time.monotonic() + total / (RATE * ports) + 600
        while len(rig.truth()) < total and time.monotonic() < deadline:
            time.sleep(2)
        rig.wait_delivered(timeout=900)
        final = log[-1]
        check_store(final, verify=True)
        export = gw.check(f"runuser -u forecourt -- {FORECOURT} export --store {STORE} "
                          "--format jsonl", timeout=900)  # fmt: skip
        stored = [json.loads(x) for x in export.splitlines() if x.startswith("{")]
        gw.poweroff()
        fsck = image.fsck(gw.disk)
    finally:
        rig.stop()
    truth = rig.truth()
    lines = [x for x in rig.receiver.snapshot() if x.get("type") == "order"]
    found = host_torture.check(truth, lines, image.STATION)
    problems += found
    rids: dict[tuple[str, str], set[str]] = defaultdict(set)
    for x in lines:
        rids[(x["record"]["nozzle"], x["record"]["order_no"])].add(x["record"]["rid"])
    arrived = set(rids)
    lost = [t for t in truth if (t["nozzle"], t["order_no"]) not in arrived]
    duplicates = sum(len(r) - 1 for r in rids.values())
    corrupt = sum(1 for p in problems if p.startswith(("chain", "altered", "boot")))
    reread = _reread(truth, stored, [c for c in log if "cut_at" in c])
    latencies = rig.latencies()
    return {
        "ok": not problems and not lost and duplicates == 0 and fsck.startswith("exit 0"),
        "cuts": sum(1 for c in log if "cut_at" in c),
        "boots": len(log),
        "sales": len(truth),
        "arrived": len(arrived),
        "lost": len(lost),
        "duplicates": duplicates,
        "corrupt": corrupt,
        "reread_after_boot": reread,
        "restarts_in_unit": sum(c.get("restarts", 0) for c in log),
        "integrity_ok_boots": sum(1 for c in log if c.get("integrity") == "ok"),
        "verify": [c.get("verify") for c in log if "verify" in c],
        "e2fsck": fsck,
        "hangup_to_platform_s": {
            "p50": round(percentile(latencies, 0.5), 1),
            "p99": round(percentile(latencies, 0.99), 1),
            "max": round(max(latencies, default=0), 1),
        },
        "unit_start_to_ready_s": [c.get("unit_start_to_ready_s") for c in log],
        "problems": problems[:50],
        "minutes": round((time.monotonic() - began) / 60, 1),
        "command_line": " ".join(gw.command_line()),
        "cycles": log,
    }


#: The guest's clock comes from the emulated RTC (whole seconds): a sale
#: counts as read after a boot when committed this long after the cut.
CLOCK_SLACK_MS = 1500


def _reread(truth: list[dict[str, Any]], stored: list[dict[str, Any]],
            cuts: list[dict[str, Any]]) -> int:  # fmt: skip
    """Sales complete on the dispenser before a cut, committed after the next boot."""
    made = {(t["nozzle"], t["order_no"]): t["_t"] for t in truth}
    count = 0
    for order in stored:
        hung_up = made.get((order["nozzle"], order["order_no"]))
        if hung_up is None:
            continue
        committed_ms = int(order["created_ms"])
        for cut in cuts:
            cut_ms = int(cut["cut_at"] * 1000)
            if hung_up < cut["cut_at"] and committed_ms > cut_ms + CLOCK_SLACK_MS:
                count += 1
                break
    return count
