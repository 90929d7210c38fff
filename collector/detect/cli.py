"""``forecourt detect PORT… [--all] [--seconds N] [--passive] [--write CONFIG] [--json]``.

The ports: the devices named, and with ``--all`` every serial device the
config (``--write``'s file, else ``--config``'s) or ``/dev/serial/by-id``
names, each once (by real path). A device the running collector holds —
its ports (both sides of a relay) and its tank gauge, as its control
socket's ``devices`` query says — is refused: detect would write on a line
a port polls, or hear half of what a relay passes (SPEC D20). With
``--all`` such a device is skipped (said on stderr); named, it is a
refusal.

Exit status: 0 every port asked was found (and ``--write`` wrote them);
1 some port was not (unknown, refused, failed); 2 bad usage, or the merged
config did not pass ``config check`` (the file is unchanged).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

from collector.detect.result import PortResult

EXIT_OK, EXIT_NOT_FOUND, EXIT_USAGE = 0, 1, 2
#: Where udev names serial adapters by their identity (stable across boots).
BY_ID = Path("/dev/serial/by-id")
#: ``--seconds`` bounds: below 0.5 s a slow master's cycle is missed; above
#: a minute per setting an installer waits ten.
MIN_SECONDS, MAX_SECONDS = 0.5, 60.0
#: ``--reply-ms`` bounds.
MIN_REPLY_MS, MAX_REPLY_MS = 5, 2000


def register(commands: Any) -> None:
    """Add ``detect`` to ``forecourt``'s subcommands."""
    from collector.detect.engine import LISTEN_S
    from collector.tools.techcli import DEFAULT_CONFIG

    p = commands.add_parser(
        "detect",
        help="find the protocol, line setting and pumps on serial lines",
        description="Listen first; probe a silent line with read-only status queries.",
    )
    p.add_argument("ports", nargs="*", metavar="PORT", help="serial device, e.g. /dev/ttyS1")
    p.add_argument(
        "--all",
        action="store_true",
        help="every device the config or /dev/serial/by-id names",
    )
    p.add_argument(
        "--seconds",
        type=_bounded(float, MIN_SECONDS, MAX_SECONDS),
        default=LISTEN_S,
        metavar="N",
        help=f"listen this long at each line setting (default {LISTEN_S:g})",
    )
    p.add_argument("--passive", action="store_true", help="never write: listen only")
    p.add_argument(
        "--reply-ms",
        type=_bounded(int, MIN_REPLY_MS, MAX_REPLY_MS),
        metavar="MS",
        help="wait this long for a pump's answer to a probe (default: the protocol's)",
    )
    p.add_argument("--write", type=Path, metavar="CONFIG", help="merge the ports found into it")
    p.add_argument("--json", action="store_true", help="JSON output")
    p.add_argument("--config", type=Path, default=DEFAULT_CONFIG, metavar="FILE")
    p.add_argument("--socket", metavar="PATH", help="control socket (default: from config)")


def _bounded(kind: type[Any], low: float, high: float) -> Any:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or not low <= value <= high:
            raise argparse.ArgumentTypeError(f"a number in [{low:g}, {high:g}], got {text!r}")
        return value

    return parse


def run(args: argparse.Namespace) -> int:
    config_path: Path = args.write or args.config
    raw = _raw(config_path)
    devices = list(args.ports)
    if args.all:
        devices += _configured(raw) + _by_id()
    devices = _unique(devices)
    if not devices:
        print("forecourt: detect: name a PORT, or --all (none found)", file=sys.stderr)
        return EXIT_USAGE
    owned = _owned(args.socket or _socket_of(raw))
    asked: list[str] = []
    refused: list[PortResult] = []
    for device in devices:
        owner = _owner(device, owned)
        if owner is None:
            asked.append(device)
        elif args.all and device not in args.ports:
            print(f"forecourt: detect: {device} skipped: {owner} holds it", file=sys.stderr)
        else:
            refused.append(
                PortResult(
                    device=device,
                    status="refused",
                    note=f"the running collector holds it ({owner}); stop it first",
                )
            )
    from collector.detect.engine import detect_all

    results = asyncio.run(
        detect_all(asked, seconds=args.seconds, passive=args.passive, reply_ms=args.reply_ms)
    )
    results = sorted([*results, *refused], key=lambda r: devices.index(r.device))
    for number, result in enumerate((r for r in results if r.stanza), start=1):
        assert result.stanza is not None
        result.stanza["number"] = number
    status = EXIT_OK if all(r.status == "found" for r in results) else EXIT_NOT_FOUND
    written, write_errors = None, []
    if args.write is not None and any(r.stanza for r in results):
        from collector.detect.write import WriteRefused, write_merged

        try:
            write_merged(args.write, [r.stanza for r in results if r.stanza is not None])
            written = str(args.write)
        except WriteRefused as exc:
            write_errors = exc.lines
            status = EXIT_USAGE
    _show(results, written, write_errors, args.json)
    return status


def _show(results: list[PortResult], written: str | None, errors: list[str], as_json: bool) -> None:
    if as_json:
        body = {"ports": [r.as_dict() for r in results], "written": written, "errors": errors}
        print(json.dumps(body, ensure_ascii=False, default=str))
        return
    from collector.detect.result import render_text

    print(render_text(results), end="")
    if written is not None:
        print(f"{written}: ports written (config check passed; the file before is .prev)")
    for line in errors:
        print(f"forecourt: not written: {line}", file=sys.stderr)


def _raw(path: Path) -> dict[str, Any]:
    """The config as plain TOML (no validation), or {} when it cannot be read."""
    from collector.tools.techcli import _raw_config

    try:
        return _raw_config(path)
    except (OSError, ValueError):
        return {}


def _configured(raw: dict[str, Any]) -> list[str]:
    ports = raw.get("ports")
    if not isinstance(ports, list):
        return []
    return [p["device"] for p in ports if isinstance(p, dict) and isinstance(p.get("device"), str)]


def _by_id() -> list[str]:
    try:
        return sorted(str(p) for p in BY_ID.iterdir())
    except OSError:
        return []


def _unique(devices: list[str]) -> list[str]:
    seen: set[str] = set()
    out = []
    for device in devices:
        real = os.path.realpath(device)
        if real not in seen:
            seen.add(real)
            out.append(device)
    return out


def _socket_of(raw: dict[str, Any]) -> str:
    from collector.tools.techcli import DEFAULT_SOCKET, _path_in

    return _path_in(raw, "control", "socket") or DEFAULT_SOCKET


def _owned(sock: str) -> dict[str, str]:
    """Real path → owner of every device the running collector holds ({} when
    none runs). A collector that answers but not ``devices`` (an older
    release) is asked for its ports."""
    from collector.tools.techcli import Down, ask

    try:
        reply = ask(sock, {"query": "devices"}, timeout=5.0)
        if not reply.get("ok"):
            reply = ask(sock, {"query": "ports"}, timeout=5.0)
    except Down:
        return {}
    out: dict[str, str] = {}
    for item in reply.get("data") or []:
        if isinstance(item, dict) and isinstance(item.get("device"), str):
            owner = item.get("owner") or f"port {item.get('number')}"
            out[os.path.realpath(item["device"])] = str(owner)
    return out


def _owner(device: str, owned: dict[str, str]) -> str | None:
    return owned.get(os.path.realpath(device))
