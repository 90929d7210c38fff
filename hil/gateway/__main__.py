"""``python -m hil.gateway build|up|measure|torture``: the product on an emulated gateway.

- ``build``: the image (cached; hil/gateway/image.py).
- ``up [--ports N]``: ``make gateway``: boot the 128 MB VM with N dispensers
  selling, wait for the unit's READY, check every sale reaches the platform
  receiver and the technician CLI reaches the daemon, report, power off.
- ``measure``: the figures of docs/performance.md, "The gateway"
  (hil/gateway/measure.py).
- ``torture [--cuts N]``: ``make gateway-torture`` (hil/gateway/torture.py).

Results go to ``test-artifacts/gateway/<command>-<time>/`` (``result.json``,
the console, qemu's and every process's log).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from hil import stack
from hil.gateway.vm import FORECOURT

ARTIFACTS = stack.ROOT / "test-artifacts" / "gateway"


def workdir(name: str) -> Path:
    path = ARTIFACTS / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"
    path.mkdir(parents=True)
    return path


def up(args: argparse.Namespace) -> dict[str, Any]:
    from hil.gateway.rig import Rig

    work = workdir("up")
    late = (args.ports,) if args.plug_late else ()
    rig = Rig(work, args.ports, args.orders, args.rate, unplugged=late)
    gw = rig.gateway
    try:
        began = time.monotonic()
        gw.boot()
        shell_s = gw.wait_shell()
        gw.wait_ready()
        result: dict[str, Any] = {
            "command_line": " ".join(gw.command_line()),
            "boot_to_shell_s": round(shell_s, 1),
            "power_on_to_ready_s": round(time.monotonic() - began, 1),
            **gw.boot_figures(),
        }
        status_rc, status = gw.sh(f"{FORECOURT} status --json", timeout=120)
        result["cli_status_exit"] = status_rc
        result["cli_reaches_daemon"] = status_rc == 0 and '"running": true' in status.replace(
            '"running":true', '"running": true'
        )
        if late:
            # A USB adapter plugged in after the unit started (DeviceAllow's
            # class resolved at start: EPERM before forecourt-serial.conf).
            time.sleep(10)
            result["plugged_late"] = gw.plug_usb_serial(args.ports, gw.links[-1])
        rig.wait_delivered(args.timeout)
        journal = gw.journal(3000)
        result["eperm_in_journal"] = journal.count("Operation not permitted")
        result["sales"] = len(rig.truth())
        result["arrived"] = len({(x["record"]["nozzle"], x["record"]["order_no"])
                                 for x in rig.arrived()})  # fmt: skip
        result["sm4"] = [line for line in gw.journal(400).splitlines() if '"started"' in line][-1:]
        result["rss_kb"] = gw.check(f"grep -E 'VmRSS|RssAnon|RssFile' /proc/{result['pid']}/status")
        gw.poweroff()
        return result
    finally:
        rig.stop()
        print(f"gateway: logs in {work}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hil.gateway")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("build", help="build (or find cached) the image")
    p_up = commands.add_parser("up", help="boot, sell, check, power off (make gateway)")
    p_up.add_argument("--ports", type=int, default=8)
    p_up.add_argument("--orders", type=int, default=5, help="sales per dispenser")
    p_up.add_argument("--rate", type=float, default=0.2, help="sales started per second, each")
    p_up.add_argument("--timeout", type=float, default=600)
    p_up.add_argument(
        "--plug-late", action="store_true",
        help="the last line's USB adapter is plugged in 10 s after READY",
    )  # fmt: skip
    p_measure = commands.add_parser("measure", help="the figures of docs/performance.md")
    p_measure.add_argument("--quick", action="store_true", help="shorter phases (a smoke run)")
    p_measure.add_argument("--phases", help="some of idle32,selling32,selling8_128mb,selling8_64mb")
    p_torture = commands.add_parser("torture", help="power cuts (make gateway-torture)")
    p_torture.add_argument("--cuts", type=int, default=20)
    p_torture.add_argument("--ports", type=int, default=3)
    p_torture.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    if args.command == "build":
        from hil.gateway.image import stage

        built = stage()
        result: dict[str, Any] = {"root": str(built.root), "bundle": built.bundle}
    elif args.command == "up":
        result = up(args)
    elif args.command == "measure":
        from hil.gateway.measure import PHASES, measure

        phases = tuple(args.phases.split(",")) if args.phases else PHASES
        result = measure(workdir("measure"), quick=args.quick, phases=phases)
    else:
        from hil.gateway.torture import torture

        result = torture(workdir("torture"), args.cuts, args.ports, args.seed)
    print(json.dumps(result, indent=1, default=str))
    return 0 if result.get("ok", True) else 1


if __name__ == "__main__":
    raise SystemExit(main())
