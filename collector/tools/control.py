"""The control socket: the technician CLI's window into the running daemon.

A unix socket (``[control] socket``, mode 0660) speaking one JSON request
line → one JSON response line per connection, then close:

    → {"query": "ports"}
    ← {"ok": true, "data": [...]}        or  {"ok": false, "error": "..."}

Bounded: a request longer than :data:`MAX_REQUEST` or slower than
:data:`REQUEST_TIMEOUT_S` is refused, a capture lasts at most
:data:`MAX_CAPTURE_S`, an integer is within SQLite's 64 bits. Every request
gets a reply line — a malformed one its reason, a query that fails on a bug
``internal error`` (and the traceback in the log), never silence. Queries
read live state (ports, nozzles, uplink) from the
running station (:class:`~collector.parts.Station`) and stored records through a
read-only connection of their own (collector/tools/storeview.py), so a query never
uses — or blocks — the writer's connection. Nothing here writes anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import sqlite3
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import structlog

from collector import logs, version
from collector.logs import Repeats
from collector.station import capture
from collector.tools import footprint, storeview
from collector.tools.localtime import local_times

if TYPE_CHECKING:
    from collector.parts import Station

log = structlog.get_logger("collector.tools.control")

#: A request is one small JSON object; 4 KiB is ample and bounds the read.
MAX_REQUEST = 4096
#: A client that does not finish its request line in this time is dropped.
REQUEST_TIMEOUT_S = 5.0
#: The longest capture one request may hold a port's tap open for.
MAX_CAPTURE_S = 600.0
#: Socket mode: root and the service group may query; others may not.
SOCKET_MODE = 0o660
#: Integers in a request (``since_ms``, ``limit``, ``port``) reach SQLite,
#: whose integers are signed 64-bit: anything wider is refused, not overflowed.
REQUEST_INT_MIN, REQUEST_INT_MAX = -(2**63), 2**63 - 1

#: Requests refused (not JSON, too long, too slow, an unknown query or a bad
#: argument) and queries that failed, by kind: once a minute in full plus
#: one summary line (collector/logs.py), however fast a client repeats them.
REFUSED = Repeats(log, "control_refused", source_field=None)
FAILED = Repeats(log, "control_query_failed", source_field=None)

Handler = Callable[["Station", dict[str, Any]], Awaitable[Any]]
_Answer = TypeVar("_Answer")


def station_time(
    query: Callable[[Station, dict[str, Any]], Awaitable[_Answer]],
) -> Callable[[Station, dict[str, Any]], Awaitable[_Answer]]:
    """The query's times at ``device.timezone`` (collector/tools/localtime.py): the
    CLI and the web page show the forecourt's clock, never the box's TZ."""

    @functools.wraps(query)
    async def at_station(c: Station, request: dict[str, Any]) -> _Answer:
        answer: _Answer = local_times(await query(c, request), c.config.device.tzinfo)
        return answer

    return at_station


class RequestError(Exception):
    """The request is wrong; ``str()`` goes back to the client."""


async def serve(collector: Station, path: str | Path) -> None:
    """Serve the control socket until cancelled."""
    sock = Path(path)
    sock.parent.mkdir(parents=True, exist_ok=True)
    if _answers(sock):
        # Another collector owns it: taking it over would hide that one from
        # the technician (and its stop would delete ours).
        log.error("control_in_use", socket=str(sock))
        return
    with contextlib.suppress(FileNotFoundError):
        sock.unlink()  # a stale socket of a crashed run

    async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _client(collector, reader, writer)

    server = await asyncio.start_unix_server(on_client, path=str(sock), limit=MAX_REQUEST)
    os.chmod(sock, SOCKET_MODE)
    ours = sock.stat().st_ino
    log.info("control_listening", socket=str(sock))
    try:
        async with server:
            await server.serve_forever()
    finally:
        with contextlib.suppress(OSError):
            if sock.stat().st_ino == ours:
                sock.unlink()


def _answers(sock: Path) -> bool:
    """Whether a live process listens on ``sock`` (a unix connect is immediate)."""
    import socket

    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        try:
            s.connect(str(sock))
        except OSError:
            return False
    return True


async def _client(
    collector: Station, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    line = b""
    try:
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT_S):
                line = await reader.readline()
            request = json.loads(line)
            if not isinstance(request, dict) or not isinstance(request.get("query"), str):
                raise RequestError('a request is {"query": NAME, ...}')
            handler = QUERIES.get(request["query"])
            if handler is None:
                raise RequestError(f"unknown query {request['query']!r}")
            reply: dict[str, Any] = {"ok": True, "data": await handler(collector, request)}
        except (ValueError, RecursionError, asyncio.LimitOverrunError) as exc:
            # RecursionError: 4 KiB of "[[[[…" is deeper than json recurses.
            reply = {"ok": False, "error": "bad request (one JSON line of at most 4 KiB)"}
            REFUSED.add("bad_request", detail=f"{type(exc).__name__}: {exc}"[:200])
        except TimeoutError:
            reply = {"ok": False, "error": "request timed out"}
            REFUSED.add("timeout")
        except RequestError as exc:
            reply = {"ok": False, "error": str(exc)}
            REFUSED.add("bad_query", detail=str(exc)[:200])
        except (storeview.StoreUnavailable, sqlite3.Error) as exc:
            reply = {"ok": False, "error": str(exc)}
            REFUSED.add("store", detail=str(exc)[:200])
        except Exception as exc:  # a query's bug: the technician is told, the daemon goes on
            collector.errors["control_query_failed"] = (
                collector.errors.get("control_query_failed", 0) + 1
            )
            FAILED.add(_query_name(line), exc=exc)
            reply = {"ok": False, "error": f"internal error ({type(exc).__name__})"}
        writer.write(json.dumps(reply, default=str).encode() + b"\n")
        await writer.drain()
    except (ConnectionError, OSError):
        pass  # the client went away; nothing to tell it
    except Exception:
        log.exception("control_failed")
    finally:
        writer.close()


def _query_name(line: bytes) -> str:
    """The request's first bytes for the log line (it may not be JSON at all)."""
    return line[:64].decode("utf-8", "replace")


#: One read-only connection per store file, reused by every query: the web
#: dashboard asks five store queries a second. Autocommit reads hold no
#: transaction open, so each query sees the latest commit and the WAL can
#: still be checkpointed.
_readers: dict[str, sqlite3.Connection] = {}


@contextlib.contextmanager
def _store_db(c: Station) -> Iterator[sqlite3.Connection]:
    path = str(c.config.store.path)
    db = _readers.get(path)
    if db is None:
        db = _readers[path] = storeview.open_readonly(path)
    try:
        yield db
    except sqlite3.Error:
        _readers.pop(path, None)  # reopen on the next query
        db.close()
        raise


#: The store's shared read-only connection, for the page's charts (collector/web/app.py).
store_reader = _store_db


def _int(request: dict[str, Any], key: str, default: int | None) -> int | None:
    value = request.get(key, default)
    if value is not None and (
        not isinstance(value, int)
        or isinstance(value, bool)
        or not REQUEST_INT_MIN <= value <= REQUEST_INT_MAX
    ):
        raise RequestError(f"{key}: an integer of at most 64 bits")
    return value


@station_time
async def q_status(c: Station, request: dict[str, Any]) -> dict[str, Any]:
    states = c.nozzles.states() if c.nozzles is not None else {}
    busy = [k for k, s in states.items() if s not in ("idle", "offline")]
    with _store_db(c) as db:
        # The writer's kept count when the daemon has its store open: counting
        # a month of unsent rows each second (the web dashboard) is tens of ms.
        unsent = (
            sum(c.store.unsent_counts().values())
            if c.store is not None
            else storeview.unsent_total(db)
        )
        active = storeview.active_alarms(db)
    return {
        "running": True,
        "version": version(),
        "device": c.config.device.id,
        "uptime_s": int(time.monotonic() - c.started),
        "clock": datetime.now(UTC).isoformat(timespec="seconds"),
        "clock_offset_ms": c.clock.offset_ms,  # the last time.sync (collector/device/clock.py)
        "ports_online": sum(1 for p in c.ports if p.stats.online),
        "ports_total": len(c.config.ports),
        "nozzles": len(states),
        "nozzles_busy": busy,
        "uplink_connected": bool(c.uplink and c.uplink.stats.connected),
        "unsent": unsent,
        "alarms_active": len(active),
        # The store's writer: queued records, a STORE_FAULT going on (buffer/writer.py).
        "store_writer": None if c.store is None else c.store.writer.stats(),
        "gauge_online": None if c.gauge is None else c.gauge.online,
        "seals": {} if c.seals is None else c.seals.watch.states(),  # SPEC F3
        "pulses": {} if c.pulses is None else c.pulses.states(),
        # The raw log (collector/station/evidence.py): blocks stored and evicted, chunks
        # dropped for a full buffer, blocks lost while the file refused them.
        "evidence": None if c.evidence is None else c.evidence.stats(),
        # Deny-listed packages loaded (collector/tools/footprint.py): none expected.
        "heavy_modules": footprint.heavy_modules(),
        # Failures caught and survived, by log event (each logged with its traceback).
        "errors": {**c.errors, **(c.config_changes.errors if c.config_changes else {})},
        # Per-event warnings counted, and the log lines they cost (collector/logs.py).
        "log": logs.counters(),
    }


#: What each port mode does, in words a technician reads (docs/relay.md).
MODE_WORDS = {
    "poll": "轮询 polls the pumps",
    "relay": "中继 relays between POS and pumps",
    "listen": "监听 listens on the line",
}


def port_words(pc: Any) -> dict[str, Any]:
    """A port's protocol, mode and device addresses in words (the page's row)."""
    from protocols import UnknownProtocol, descriptor

    try:
        title = descriptor(pc.protocol).title
    except UnknownProtocol:
        title = pc.protocol
    addresses = list(pc.addresses)
    where = f"{'地址 address' if len(addresses) == 1 else '地址 addresses'} "
    where += ", ".join(str(a) for a in addresses)
    return {
        "title": title,
        "mode": pc.mode,
        "mode_words": MODE_WORDS.get(pc.mode, pc.mode),
        "addresses": addresses,
        "address_words": where,
    }


async def q_ports(c: Station, request: dict[str, Any]) -> list[dict[str, Any]]:
    by_number = {p.number: p for p in c.ports}
    out = []
    for pc in c.config.ports:
        port = by_number.get(pc.number)
        stats = port.stats if port is not None else None
        out.append(
            {
                "number": pc.number,
                "device": pc.device,
                "protocol": pc.protocol,
                **port_words(pc),
                "online": bool(stats and stats.online),
                "sales": stats.sales if stats else 0,
                "duplicates": stats.duplicates if stats else 0,
                "errors": dict(stats.errors) if stats else {},
                "books": _books(port),
                "flags": dict(stats.flags) if stats else {},  # edge findings by code
            }
        )
    return out


def _books(port: Any) -> dict[str, Any] | None:
    """A relay's or tap's reconciliation with the POS (collector/station/books.py): its
    counters and the findings stored, by code; None where there is none."""
    books = getattr(getattr(port, "sink", None), "books", None)
    if books is None:
        return None
    return {**books.reconciler.counters, "findings": dict(books.findings)}


async def q_devices(c: Station, request: dict[str, Any]) -> list[dict[str, Any]]:
    """Every serial device the collector holds, and what holds it (``forecourt
    detect`` refuses these: it must never write on a line a port polls or taps).
    A line lent to the web page's detect is not held (collector/station/lending.py)."""
    out: list[dict[str, Any]] = []
    for pc in c.config.ports:
        if c.lending.lent(pc.number):
            continue
        out.append({"device": pc.device, "owner": f"port {pc.number} ({pc.protocol})"})
        if pc.pos_device is not None:
            owner = f"port {pc.number} ({pc.protocol}, POS side)"
            out.append({"device": pc.pos_device, "owner": owner})
    gauge = c.config.gauge
    if gauge.enabled and gauge.link == "serial" and gauge.device:
        out.append({"device": gauge.device, "owner": "the tank gauge"})
    return out


async def q_nozzles(c: Station, request: dict[str, Any]) -> list[dict[str, Any]]:
    states = c.nozzles.states() if c.nozzles is not None else {}
    return [{"nozzle": key, "state": state} for key, state in states.items()]


@station_time
async def q_orders(c: Station, request: dict[str, Any]) -> list[dict[str, Any]]:
    nozzle = request.get("nozzle")
    if nozzle is not None and not isinstance(nozzle, str):
        raise RequestError("nozzle: a nozzle key like 1-1-1")
    with _store_db(c) as db:
        return storeview.orders(
            db, nozzle, _int(request, "since_ms", None), _int(request, "limit", 20) or 20
        )


@station_time
async def q_tanks(c: Station, request: dict[str, Any]) -> dict[str, Any]:
    with _store_db(c) as db:
        tanks = storeview.latest_tanks(db)
    capacity = {t.number: t.declared_capacity_l for t in c.config.tanks}
    for tank in tanks:
        tank["capacity_l"] = capacity.get(int(tank.get("tank", 0)))
    return {"gauge_online": None if c.gauge is None else c.gauge.online, "tanks": tanks}


@station_time
async def q_alarms(c: Station, request: dict[str, Any]) -> dict[str, Any]:
    with _store_db(c) as db:
        return {
            "active": storeview.active_alarms(db),
            "recent": storeview.alarms(db, _int(request, "limit", 50) or 50),
        }


async def q_buffer(c: Station, request: dict[str, Any]) -> dict[str, Any]:
    with _store_db(c) as db:
        return storeview.buffer(db, c.config.store.path)


async def q_uplink(c: Station, request: dict[str, Any]) -> dict[str, Any]:
    """Publishing and the command channel separately (uplink/status.py), the
    endpoint in use, the last error with its time (``old`` once its part
    recovered), and the backlog of unsent records from the store."""
    u, up = c.config.uplink, c.uplink
    stats = up.stats if up is not None else None
    link = up.link() if up is not None else None
    status = up.status() if up is not None else {}
    with _store_db(c) as db:
        backlog = storeview.unsent_total(db)
    return {
        "endpoint": link["endpoint"] if link else f"{u.host}:{u.port}",
        "link": link,
        "tls": u.tls,
        "session": u.session,
        "connected": bool(stats and stats.connected),
        "publishing": {**status.get("publishing", {"connected": False}), "backlog": backlog},
        "commands": status.get("commands", {"state": "off"}),
        "connects": stats.connects if stats else 0,
        "messages": stats.messages if stats else 0,
        "records": stats.records if stats else 0,
        "bytes": stats.bytes if stats else 0,
        "last_error": status.get("last_error"),
        "errors": dict(stats.errors) if stats else {},
    }


@station_time
async def q_capture(c: Station, request: dict[str, Any]) -> dict[str, Any]:
    """Raw frames of one port for N seconds, each with its decoded summary."""
    number = _int(request, "port", None)
    pc = next((p for p in c.config.ports if p.number == number), None)
    if pc is None:
        raise RequestError(f"port {number}: no such port")
    seconds = request.get("seconds", 5)
    if not isinstance(seconds, int | float) or not 0 < seconds <= MAX_CAPTURE_S:
        raise RequestError(f"seconds: a number in (0, {MAX_CAPTURE_S:.0f}]")
    tap = capture.start(pc.number)
    try:
        await asyncio.sleep(float(seconds))
    finally:
        capture.stop(pc.number, tap)
    return {
        "port": pc.number,
        "protocol": pc.protocol,
        "seconds": seconds,
        "dropped": tap.dropped,
        "frames": [_frame(pc.protocol, at, d, data) for at, d, data in tap.frames],
    }


def _frame(protocol: str, at: float, direction: str, data: bytes) -> dict[str, Any]:
    from protocols import load_describer

    try:
        summary: Any = load_describer(protocol)(data)
    except Exception as exc:  # a describer must not end a capture
        log.warning("describe_failed", protocol=protocol, exc_info=True)
        summary = f"undecodable: {exc}"
    return {
        "at": datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds"),
        "dir": direction,
        "hex": data.hex(" "),
        "decoded": summary,
    }


QUERIES: dict[str, Handler] = {
    "status": q_status,
    "ports": q_ports,
    "devices": q_devices,
    "nozzles": q_nozzles,
    "orders": q_orders,
    "tanks": q_tanks,
    "alarms": q_alarms,
    "buffer": q_buffer,
    "uplink": q_uplink,
    "capture": q_capture,
}
