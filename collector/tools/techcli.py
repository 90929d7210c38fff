"""Technician commands: ``forecourt status|ports|nozzles|orders|…`` (docs/cli.md).

They ask the running collector over its control socket (collector/tools/control.py);
when it is down, what the store can answer (orders, tanks, alarms, buffer) is
read from the SQLite file read-only, and the command says the collector is not
running (exit 3). Quick commands import neither pydantic nor aiomqtt: the
config file is read as plain TOML (config/toml_read.py's bounds) for the two
paths they need.

Exit status: 0 ok; 1 a check failed or the collector refused the request;
2 bad usage or unreadable config; 3 the collector is not running (the store's
answer, when there is one, is still printed); 4 the store cannot be read (no
such file, not a collector store, a newer schema, damaged pages). Every
failure is one line on stderr (collector/cli.py: 70 for a bug, no traceback).
"""

from __future__ import annotations

import argparse
import json
import math
import sqlite3
import sys
import time
import tomllib
from datetime import datetime, tzinfo
from pathlib import Path
from typing import Any

from collector.tools.control_client import Down, ask

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_DOWN, EXIT_STORE = 0, 1, 2, 3, 4
#: The file the unit runs with (systemd/forecourt-collector.service ExecStart).
DEFAULT_CONFIG = Path("/etc/forecourt/collector.toml")
DEFAULT_SOCKET = "/run/forecourt/control.sock"
#: Store-answerable commands (the rest need the running collector).
STORE_COMMANDS = ("orders", "tanks", "alarms", "buffer", "status")
COMMANDS = ("status", "ports", "nozzles", "orders", "tanks", "alarms", "buffer", "uplink")


def register(commands: Any) -> None:
    """Add the technician subcommands to ``forecourt``'s subparsers."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="JSON output")
    common.add_argument("--config", type=Path, default=DEFAULT_CONFIG, metavar="FILE")
    common.add_argument("--socket", metavar="PATH", help="control socket (default: from config)")
    common.add_argument("--store", metavar="PATH", help="store file (default: from config)")
    helps = {
        "status": "the station at a glance",
        "ports": "dispenser ports: online, sales, errors",
        "nozzles": "live nozzle states",
        "orders": "recent orders",
        "tanks": "tank levels (last inventory)",
        "alarms": "active and recent alarms",
        "buffer": "stored and unsent records",
        "uplink": "platform link state",
    }
    for name in COMMANDS:
        p = commands.add_parser(name, parents=[common], help=helps[name])
        if name == "orders":
            p.add_argument("--nozzle", help="one nozzle key, e.g. 1-1-1")
            p.add_argument("--since", help="committed at or after (ISO date/time, local)")
            p.add_argument("--limit", type=int, default=20)
    cap = commands.add_parser(
        "capture",
        parents=[common],
        help="raw frames of one port, live; or `capture export`: the raw log of a period",
    )
    cap.add_argument("port", metavar="PORT|export")
    cap.add_argument("--seconds", type=_capture_seconds, default=5.0)
    cap.add_argument("--port", dest="export_port", type=int, metavar="N", help="export: the port")
    cap.add_argument("--from", dest="export_from", metavar="TIME", help="export: ISO date/time")
    cap.add_argument("--to", dest="export_to", metavar="TIME", help="export: ISO date/time")
    cap.add_argument("--out", type=Path, metavar="FILE", help="export: file (default stdout)")
    exp = commands.add_parser("export", parents=[common], help="orders as CSV or JSON lines")
    exp.add_argument("--since", help="ISO date/time (local)")
    exp.add_argument("--until", help="ISO date/time (local), exclusive")
    exp.add_argument("--format", choices=("csv", "jsonl"), default="csv")
    commands.add_parser("selftest", parents=[common], help="ports, store, keys, broker, clock")
    web = commands.add_parser("web", help="the local web page")
    web_commands = web.add_subparsers(dest="web_command", metavar="COMMAND", required=True)
    passwd = web_commands.add_parser(
        "passwd", help="set the web login password (read from the terminal or stdin)"
    )
    passwd.add_argument("--config", type=Path, default=DEFAULT_CONFIG, metavar="FILE")
    passwd.add_argument("--file", type=Path, help="hash file (default: [web] password_file)")
    passwd.add_argument(
        "--user",
        metavar="NAME",
        help="run as root: give the file to NAME (default: the owner of the file or of its"
        " directory when not root, else the user forecourt)",
    )


NAMES = (*COMMANDS, "capture", "export", "selftest", "web")
DEFAULT_PASSWORD_FILE = "/etc/forecourt/web-password"
#: The control socket's own bound on a capture (collector/tools/control.py).
MAX_CAPTURE_S = 600.0


def _capture_seconds(text: str) -> float:
    """``--seconds``: a number in (0, 600], refused by argparse otherwise."""
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and 0 < seconds <= MAX_CAPTURE_S):
        raise argparse.ArgumentTypeError(f"a number in (0, {MAX_CAPTURE_S:g}], got {text!r}")
    return seconds


def run(args: argparse.Namespace) -> int:
    if args.command == "web":
        return _passwd(args)
    args.unreadable = None
    try:
        raw = _raw_config(args.config)
    except (OSError, ValueError) as exc:  # TOMLDecodeError, UnicodeDecodeError are ValueErrors
        # Given both paths (export needs only the store), no config is needed.
        # A technician of the service's group may not read the config (0600,
        # the service user's): the socket commands then ask the unit's socket.
        asks_socket = args.command in (*COMMANDS, "capture")
        if isinstance(exc, PermissionError) and asks_socket:
            args.unreadable = f"{args.config}: {_why(exc)}"
        elif args.store is None or (args.socket is None and not _store_only(args)):
            print(f"forecourt: {args.config}: {_why(exc)}", file=sys.stderr)
            return EXIT_USAGE
        raw = {}
    try:
        return _dispatch(args, raw)
    except (ValueError, OverflowError) as exc:  # a --since / --until that is no ISO date
        print(f"forecourt: {exc}", file=sys.stderr)
        return EXIT_USAGE


def _store_only(args: argparse.Namespace) -> bool:
    """Commands that read the store's files only (no socket, no config)."""
    return args.command == "export" or (args.command == "capture" and args.port == "export")


def _why(exc: Exception) -> str:
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    if isinstance(exc, UnicodeDecodeError):
        return "not UTF-8 text"
    return f"not valid TOML: {exc}"


def _path_in(raw: dict[str, Any], table: str, key: str) -> str | None:
    """``[table] key`` when it is a string (the loader judges the rest)."""
    section = raw.get(table)
    value = section.get(key) if isinstance(section, dict) else None
    return value if isinstance(value, str) and value and "\x00" not in value else None


def _dispatch(args: argparse.Namespace, raw: dict[str, Any]) -> int:
    sock = args.socket or _path_in(raw, "control", "socket") or DEFAULT_SOCKET
    store = args.store or _path_in(raw, "store", "path")
    if args.command == "export":
        from collector.tools.export import export

        return export(store, _ms(args.since), _ms(args.until), args.format, sys.stdout)
    if args.command == "capture" and args.port == "export":
        return _capture_export(args, raw, store)
    if args.command == "capture":
        if not args.port.isdigit():
            print(
                f"forecourt capture: PORT is a number, or `export`: {args.port!r}", file=sys.stderr
            )
            return EXIT_USAGE
        args.port = int(args.port)
    if args.command == "selftest":
        from collector.tools.selftest import selftest

        return selftest(raw, sock, store, args.json)
    request: dict[str, Any] = {"query": args.command}
    if args.command == "orders":
        request.update(nozzle=args.nozzle, since_ms=_ms(args.since), limit=args.limit)
    if args.command == "capture":
        request.update(port=args.port, seconds=args.seconds)
    wait = 10.0 + (args.seconds if args.command == "capture" else 0)
    try:
        reply = ask(sock, request, timeout=wait)
    except Down as exc:
        return _offline(args, request, store, str(exc), raw)
    if not reply.get("ok"):
        print(f"forecourt: {reply.get('error')}", file=sys.stderr)
        return EXIT_FAILED
    if args.command == "uplink" and not args.json:
        from collector.tools.localtime import station_tz

        _show_uplink(reply["data"], station_tz(raw))
        return EXIT_OK
    _show(args.command, reply["data"], args.json)
    return EXIT_OK


def _capture_export(args: argparse.Namespace, raw: dict[str, Any], store: str | None) -> int:
    """``capture export --port N --from … --to …``: the raw log of a period
    (read-only, beside the store: the daemon may run or not)."""
    from buffer.rawblocks import RawLogError
    from buffer.rawlog import RawLog, rawlog_path
    from collector.station.evidence_io import export
    from uplink.crypto import sm3

    if args.export_port is None or args.export_from is None or args.export_to is None:
        print("forecourt capture export: give --port, --from and --to", file=sys.stderr)
        return EXIT_USAGE
    if store is None:
        print("forecourt capture export: no store path (--store or [store] path)", file=sys.stderr)
        return EXIT_USAGE
    ports = raw.get("ports")
    protocol = (
        next((str(p.get("protocol")) for p in ports if p.get("number") == args.export_port), "")
        if isinstance(ports, list)
        else ""
    )
    path = rawlog_path(Path(store))
    if not path.is_file():
        print(f"forecourt: {path}: no raw log", file=sys.stderr)
        return EXIT_STORE
    try:
        rawlog = RawLog(path, sm3, max_bytes=0, keep_days=0, readonly=True)
    except RawLogError as exc:
        print(f"forecourt: {exc}", file=sys.stderr)
        return EXIT_STORE
    from_ms, to_ms = _ms(args.export_from), _ms(args.export_to)
    assert from_ms is not None and to_ms is not None
    try:
        if args.out is None:
            written = export(rawlog, args.export_port, protocol, from_ms, to_ms, sys.stdout)
        else:
            with args.out.open("w", encoding="utf-8") as out:
                written = export(rawlog, args.export_port, protocol, from_ms, to_ms, out)
    finally:
        rawlog.close()
    print(f"port {args.export_port}: {written} blocks", file=sys.stderr)
    return EXIT_OK


def _passwd(args: argparse.Namespace) -> int:
    """Write the web login's salted scrypt hash file (mode 0600), the service
    user's when root runs this (config/filemodes.py): the daemon reads it."""
    import getpass

    from collector.web.auth import write_hash_file
    from config.filemodes import NoSuchUser, owner_for

    path = args.file
    if path is None:
        try:
            raw = _raw_config(args.config)
        except (OSError, ValueError):
            raw = {}
        path = Path(_path_in(raw, "web", "password_file") or DEFAULT_PASSWORD_FILE)
    try:
        owner = owner_for(path, args.user)
    except NoSuchUser as exc:
        print(f"forecourt: --user: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if sys.stdin.isatty():
        password = getpass.getpass("new web password: ")
        if getpass.getpass("again: ") != password:
            print("forecourt: the passwords differ", file=sys.stderr)
            return EXIT_FAILED
    else:
        password = sys.stdin.readline().rstrip("\n")
    try:
        write_hash_file(path, password, owner)
    except (ValueError, OSError) as exc:
        print(f"forecourt: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(f"{path}: password set ({_owner_and_mode(path)})")
    return EXIT_OK


def _owner_and_mode(path: Path) -> str:
    """``owner forecourt, mode 0600``: who the daemon must be to read the file."""
    import pwd

    st = path.stat()
    try:
        name = pwd.getpwuid(st.st_uid).pw_name
    except KeyError:
        name = str(st.st_uid)
    return f"owner {name}, mode {st.st_mode & 0o7777:04o}"


def _raw_config(path: Path) -> dict[str, Any]:
    from config import toml_read

    with open(path, "rb") as f:
        raw = f.read(toml_read.MAX_TOML_BYTES + 1)
    if len(raw) > toml_read.MAX_TOML_BYTES:
        raise tomllib.TOMLDecodeError(f"larger than {toml_read.MAX_TOML_BYTES // 1024} KiB")
    return toml_read.load_bytes(raw)


def _ms(text: str | None) -> int | None:
    if text is None:
        return None
    at = datetime.fromisoformat(text)
    return int(at.astimezone().timestamp() * 1000)


def _offline(
    args: argparse.Namespace,
    request: dict[str, Any],
    store: str | None,
    why: str,
    raw: dict[str, Any],
) -> int:
    if args.unreadable is not None and args.socket is None:
        why += f"; {args.unreadable}, so the default socket was asked"
    print(f"forecourt: the collector is not running ({why})", file=sys.stderr)
    if args.command not in STORE_COMMANDS or store is None:
        if args.json:
            print(json.dumps({"running": False, "error": why}))
        return EXIT_DOWN
    from collector.tools import storeview

    try:
        db = storeview.open_readonly(store)
    except storeview.StoreUnavailable as exc:
        print(f"forecourt: {exc}", file=sys.stderr)
        return EXIT_STORE
    try:
        data = _from_store(args.command, request, db, store)
    except (sqlite3.Error, ValueError) as exc:  # damaged pages, an unreadable body
        print(f"forecourt: {store}: cannot read store: {exc}", file=sys.stderr)
        return EXIT_STORE
    finally:
        db.close()
    print("(from the store: the collector is not running)", file=sys.stderr)
    from collector.tools.localtime import local_times, station_tz

    _show(args.command, local_times(data, station_tz(raw)), args.json)
    return EXIT_DOWN


def _from_store(command: str, request: dict[str, Any], db: sqlite3.Connection, store: str) -> Any:
    """What ``command`` answers from the store alone."""
    from collector.tools import storeview

    with db:
        data: Any
        if command == "orders":
            data = storeview.orders(db, request["nozzle"], request["since_ms"], request["limit"])
        elif command == "tanks":
            data = {"gauge_online": None, "tanks": storeview.latest_tanks(db)}
        elif command == "alarms":
            data = {"active": storeview.active_alarms(db), "recent": storeview.alarms(db)}
        elif command == "buffer":
            data = storeview.buffer(db, store)
        else:
            data = {
                "running": False,
                "unsent": storeview.unsent_total(db),
                "alarms_active": len(storeview.active_alarms(db)),
            }
    return data


# -- human output --------------------------------------------------------------


def _show(command: str, data: Any, as_json: bool) -> None:
    if as_json:
        print(json.dumps(data, ensure_ascii=False, default=str))
        return
    if command == "status":
        for key, value in data.items():
            print(f"{key:18} {value}")
    elif command == "ports":
        _table(
            data,
            ("number", "device", "protocol", "online", "sales", "duplicates", "errors", "flags"),
        )
    elif command == "nozzles":
        _table(data, ("nozzle", "state"))
    elif command == "orders":
        cols = ("id", "nozzle", "nseq", "order_no", "grade", "volume", "amount", "ended_at", "sent")
        _table(data, cols)
    elif command == "tanks":
        print(f"gauge online: {data['gauge_online']}")
        _table(data["tanks"], ("tank", "grade", "at", "volume_l", "ullage_l", "capacity_l"))
    elif command == "alarms":
        print("active:")
        _table(data["active"], ("source", "code", "state", "at"))
        print("recent:")
        _table(data["recent"], ("source", "code", "state", "at"))
    elif command == "buffer":
        print(f"{data['path']}  {data['file_bytes']} bytes  unsent {data['unsent']}")
        rows = [{"kind": k, **v} for k, v in data["kinds"].items()]
        _table(rows, ("kind", "stored", "unsent"))
    elif command == "capture":
        print(f"port {data['port']} ({data['protocol']}), {len(data['frames'])} chunks")
        for f in data["frames"]:
            print(f"{f['at']} {f['dir']} {f['hex']}")
            print(f"    {json.dumps(f['decoded'], ensure_ascii=False, default=str)}")


def _show_uplink(data: dict[str, Any], tz: tzinfo) -> None:
    """Publishing and the command channel on lines of their own, times at the
    station's offset with their age."""
    now_ms = time.time_ns() // 1_000_000

    def at(ms: Any) -> str:
        if not isinstance(ms, int):
            return "never"
        when = datetime.fromtimestamp(ms / 1000, tz).isoformat(timespec="seconds")
        return f"{when} ({max(0, now_ms - ms) // 1000} s ago)"

    link, pub, cmd = data.get("link") or {}, data.get("publishing", {}), data.get("commands", {})
    via = f" via {link['interface']}" if link.get("interface") else ""
    role = "primary" if link.get("primary") else "backup"
    print(f"{'link':12} {link.get('name')} ({link.get('endpoint')}{via}, {role})")
    print(f"{'session':12} {data.get('session')}")
    state = "connected" if pub.get("connected") else "down"
    print(
        f"{'publishing':12} {state} since {at(pub.get('since_ms'))}; last PUBACK "
        f"{at(pub.get('last_puback_ms'))}; backlog {pub.get('backlog')}"
    )
    line = f"{cmd.get('state')}"
    if cmd.get("state") != "off":
        line += f" since {at(cmd.get('since_ms'))}"
    if cmd.get("reason"):
        line += f": {cmd['reason']}"
    print(f"{'commands':12} {line}")
    error = data.get("last_error")
    if error:
        age = "recovered" if error.get("old") else "current"
        print(f"{'last error':12} {at(error.get('at_ms'))} {error.get('text')} [{age}]")
    else:
        print(f"{'last error':12} none")
    for key in ("connects", "messages", "records", "bytes", "tls", "errors"):
        print(f"{key:12} {_cell(data.get(key))}")


def _table(rows: list[dict[str, Any]], cols: tuple[str, ...]) -> None:
    cells = [[_cell(r.get(c)) for c in cols] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(cols)]
    print("  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True)).rstrip())
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
    if not rows:
        print("(none)")


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in value.items()) or "-"
    return str(value)
