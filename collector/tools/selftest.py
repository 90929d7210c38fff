"""``forecourt selftest``: can this box collect and deliver?

Each check is one line ``ok|FAIL name: detail``; exit 1 when any fails.
Checks: the collector answers (informational), every configured port's
device exists, the store opens read-only and passes ``quick_check``, the
key file loads with the configured kid, every endpoint the config names
(``[[uplink.endpoints]]``, else ``uplink.host``/``port``) accepts a TCP
connection through its interface, the system clock is plausible.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

#: A clock before this is a gateway that booted without RTC or NTP: order
#: times would be wrong (the build year of this check).
CLOCK_FLOOR = time.mktime((2025, 1, 1, 0, 0, 0, 0, 0, 0))
#: Broker reachability: a TCP connect, bounded so selftest stays quick.
BROKER_TIMEOUT_S = 3.0


def checks(raw: dict[str, Any], sock: str, store: str | None) -> list[dict[str, Any]]:
    from collector.tools.control_client import Down, ask
    from collector.tools.localtime import station_tz

    out: list[dict[str, Any]] = []

    def add(name: str, ok: bool, detail: str, required: bool = True) -> None:
        out.append({"check": name, "ok": ok, "detail": detail, "required": required})

    try:
        status = ask(sock, {"query": "status"}, timeout=5.0).get("data", {})
        add("collector", True, f"running, {status.get('ports_online')} ports online", False)
    except Down as exc:
        add("collector", False, f"not running ({exc})", False)
    ports = raw.get("ports")
    for port in ports if isinstance(ports, list) else []:
        port = port if isinstance(port, dict) else {}
        device = port.get("device")
        device = device if isinstance(device, str) and "\x00" not in device else ""
        add(f"port {port.get('number')}", os.path.exists(device), device or "no device")
    if store is None:
        add("store", False, "no store path")
    else:
        add("store", *_guarded(lambda: _store(store)))
    uplink = raw.get("uplink")
    uplink = uplink if isinstance(uplink, dict) else {}
    add("keys", *_guarded(lambda: _keys(uplink)))
    try:
        brokers = _brokers(uplink)
    except (ValueError, TypeError, OverflowError) as exc:  # the raw TOML is not validated
        brokers = [("broker", False, f"{type(exc).__name__}: {exc}")]
    for name, ok, detail in brokers:
        add(name, ok, detail)
    now = time.time()
    shown = datetime.fromtimestamp(now, station_tz(raw)).isoformat(timespec="seconds")
    add("clock", now > CLOCK_FLOOR, shown)
    return out


def _guarded(check: Callable[[], tuple[bool, str]]) -> tuple[bool, str]:
    """A check whose config values are of the wrong type (the raw TOML is not
    validated here) or whose store is damaged fails with its reason, on its line."""
    try:
        return check()
    except (ValueError, TypeError, OverflowError, sqlite3.Error) as exc:
        return False, f"{type(exc).__name__}: {exc}"


def _store(path: str) -> tuple[bool, str]:
    from collector.tools.storeview import StoreUnavailable, open_readonly

    try:
        db = open_readonly(path)
    except StoreUnavailable as exc:
        return False, str(exc)
    try:
        result = db.execute("PRAGMA quick_check").fetchone()[0]
    finally:
        db.close()
    return result == "ok", f"{path}: quick_check {result}"


def _keys(uplink: dict[str, Any]) -> tuple[bool, str]:
    from uplink.keys import KeyFileError, load_keys

    path, kid = uplink.get("keys_file"), uplink.get("kid")
    if not path or not isinstance(path, str):
        return False, "no uplink.keys_file"
    try:
        keys = load_keys(Path(path))
    except KeyFileError as exc:
        return False, str(exc)
    if kid not in keys:
        return False, f"{path}: no key with kid {kid!r}"
    return True, f"{path}: kid {kid}"


def endpoints(uplink: dict[str, Any]) -> list[tuple[str, str, int, str | None]]:
    """(label, host, port, interface) of every endpoint the config names, the
    primary first: ``[[uplink.endpoints]]``, else ``uplink.host``/``port``
    (their defaults as in config/models_uplink.py)."""
    listed = uplink.get("endpoints") or []
    if not listed:
        host, port = str(uplink.get("host", "127.0.0.1")), int(uplink.get("port", 1883))
        return [(f"{host}:{port}", host, port, None)]
    from config.derived import parse_endpoint_url

    out = []
    for endpoint in listed:
        if endpoint.get("url"):  # mqtt://, https:// … (validated before this)
            at = parse_endpoint_url(str(endpoint["url"]))
            host, port = at.host, at.port
        else:
            host, port = str(endpoint.get("host", "")), int(endpoint.get("port", 1883))
        label = str(endpoint.get("name") or f"{host}:{port}")
        out.append((label, host, port, endpoint.get("interface")))
    return out


def _brokers(uplink: dict[str, Any]) -> list[tuple[str, bool, str]]:
    """One check per endpoint: a TCP connect through its interface, the way the
    uplink connects (uplink/links.py). One endpoint: the check is ``broker``."""
    from uplink.links import open_connection

    found = endpoints(uplink)
    out = []
    for label, host, port, interface in found:
        name = "broker" if len(found) == 1 else f"broker {label}"
        via = f" via {interface}" if interface else ""
        try:
            open_connection(host, port, interface, BROKER_TIMEOUT_S).close()
        except OSError as exc:
            out.append((name, False, f"{host}:{port}{via}: {exc}"))
        else:
            out.append((name, True, f"{host}:{port}{via} reachable"))
    return out


def selftest(raw: dict[str, Any], sock: str, store: str | None, as_json: bool) -> int:
    results = checks(raw, sock, store)
    failed = any(r["required"] and not r["ok"] for r in results)
    if as_json:
        print(json.dumps({"ok": not failed, "checks": results}, ensure_ascii=False))
    else:
        for r in results:
            print(f"{'ok  ' if r['ok'] else 'FAIL'} {r['check']}: {r['detail']}")
    return 1 if failed else 0
