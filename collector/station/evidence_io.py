"""The raw log read back: ``evidence.fetch``, ``capture export``, ``decode --evidence``.

One shape for both ways out (docs/uplink-protocol.md ``evidence.fetch``,
docs/cli.md): a *head* — ``port``, ``protocol``, ``from_ms``, ``to_ms``,
``prev`` (the ``h`` the first block links to, hex), ``evicted`` (what
eviction took from the port: ``blocks``, ``bytes``, ``until_ms``) — and the
stored blocks that overlap the period, oldest first, each as stored:
``first_ms``, ``last_ms``, ``segments``, ``raw_bytes``, ``body`` (base64 of
the zlib body, buffer/rawblocks.py), ``h`` (hex). Whoever holds them checks
the chain (``h`` = SM3(prev ‖ header ‖ body)) without trusting the device's
reading of it, and reads the bytes with :func:`decode_evidence`.

An export is JSON lines: the head with ``"evidence": 1``, then one line per
block. A fetch answers with ``parts`` replies (kind ``reply``, each stored
first and sealed like every other message), each ``{"evidence": head +
{"part", "parts"}, "blocks": [...]}`` within :data:`PART_BYTES`, after a
summary reply of the command itself.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, TextIO

from buffer.rawblocks import RawLogError, Segment, expand
from buffer.rawlog import GENESIS, Block, RawLog, block_hash

if TYPE_CHECKING:
    from collector.station.evidence import EvidenceRecorder

#: Bytes of block bodies per reply part: with base64 and JSON ≈ 45 KB, a
#: message any broker takes, and a few parts per busy port-hour.
PART_BYTES = 32 * 1024

#: Bytes of block bodies one fetch may answer with: ≈ 2 busy port-days
#: (docs/store.md). A longer period is refused (``TOO_LARGE``, naming its
#: size): the platform asks for it in pieces, and the store's budget is not
#: spent on one command.
MAX_FETCH_BYTES = 8 * 1024 * 1024

EXPORT_VERSION = 1


def block_json(b: Block) -> dict[str, Any]:
    return {
        "first_ms": b.first_ms,
        "last_ms": b.last_ms,
        "segments": b.segments,
        "raw_bytes": b.raw_bytes,
        "body": base64.b64encode(b.body).decode("ascii"),
        "h": b.h.hex(),
    }


def block_of(port: int, item: Mapping[str, Any]) -> Block:
    try:
        return Block(
            0,
            port,
            int(item["first_ms"]),
            int(item["last_ms"]),
            int(item["segments"]),
            int(item["raw_bytes"]),
            base64.b64decode(item["body"], validate=True),
            bytes.fromhex(item["h"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise RawLogError(f"not an evidence block: {exc}") from None


def head(
    rawlog: RawLog, port: int, protocol: str, from_ms: int, to_ms: int, blocks: list[Block]
) -> dict[str, Any]:
    evicted = rawlog.eviction(port)
    prev = rawlog.previous_h(blocks[0]) if blocks else GENESIS
    return {
        "port": port,
        "protocol": protocol,
        "from_ms": from_ms,
        "to_ms": to_ms,
        "prev": prev.hex(),
        "evicted": {"blocks": evicted.blocks, "bytes": evicted.size, "until_ms": evicted.until_ms},
    }


def parts(
    rawlog: RawLog, port: int, protocol: str, from_ms: int, to_ms: int
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(summary, the reply parts) of a fetch; ValueError when too large."""
    size = rawlog.period_bytes(port, from_ms, to_ms)  # before reading any of it
    if size > MAX_FETCH_BYTES:
        raise ValueError(
            f"the period holds {size} bytes of raw log, more than {MAX_FETCH_BYTES}: ask for less"
        )
    blocks = list(rawlog.blocks(port, from_ms, to_ms))
    top = head(rawlog, port, protocol, from_ms, to_ms, blocks)
    pieces: list[list[Block]] = [[]]
    used = 0
    for b in blocks:
        if pieces[-1] and used + len(b.body) > PART_BYTES:
            pieces.append([])
            used = 0
        pieces[-1].append(b)
        used += len(b.body)
    if not blocks:
        pieces = []
    out = [
        {
            "evidence": top | {"part": n, "parts": len(pieces)},
            "blocks": [block_json(b) for b in piece],
        }
        for n, piece in enumerate(pieces, 1)
    ]
    summary = {**top, "parts": len(out), "blocks": len(blocks), "bytes": size}
    return summary, out


def register_evidence_fetch(
    processor: Any,
    rawlog: RawLog,
    recorder: EvidenceRecorder,
    protocols: Mapping[int, str],
    store_part: Callable[[dict[str, Any]], bool],
) -> None:
    """``evidence.fetch`` ``{"port", "from", "to"}`` (epoch ms or ISO 8601
    with an offset): the open blocks are sealed first, so the period may
    end now, and the period read, in the recorder's worker thread; the
    parts are replies of their own under the command's id."""
    from buffer.outbox import to_ms as epoch_ms
    from uplink.commands import BAD_REQUEST, CommandError, current_command_id, reply_body

    async def evidence_fetch(args: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(args) - {"port", "from", "to"})
        if unknown:
            raise CommandError(BAD_REQUEST, f"unknown arguments: {', '.join(unknown)}")
        port = args.get("port")
        if not isinstance(port, int) or isinstance(port, bool) or port not in protocols:
            raise CommandError(BAD_REQUEST, f"port must be one of {sorted(protocols)}")
        try:
            from_ms = to_ms_arg(args.get("from"), epoch_ms)
            to_ms = to_ms_arg(args.get("to"), epoch_ms)
        except ValueError as exc:
            raise CommandError(BAD_REQUEST, str(exc)) from None
        if to_ms < from_ms:
            raise CommandError(BAD_REQUEST, "to is before from")
        try:
            summary, replies = await recorder.sealed_then(
                lambda: parts(rawlog, port, protocols[port], from_ms, to_ms), seal_all=True
            )
        except ValueError as exc:
            raise CommandError("TOO_LARGE", str(exc)) from None
        command_id = current_command_id.get()
        stored = sum(store_part(reply_body(command_id, r, None)) for r in replies)
        if stored < len(replies):
            raise CommandError("STORE_FULL", f"{stored} of {len(replies)} parts taken")
        return summary

    processor.register("evidence.fetch", evidence_fetch)


def to_ms_arg(value: object, to_ms: Callable[[str | int], int]) -> int:
    if not isinstance(value, int | str) or isinstance(value, bool):
        raise ValueError("from and to: epoch milliseconds or ISO 8601 with an offset")
    return to_ms(value)


# ---------------------------------------------------------------- export


def export(rawlog: RawLog, port: int, protocol: str, from_ms: int, to_ms: int, out: TextIO) -> int:
    """Write the period as an export (JSON lines), one block at a time; the
    blocks written."""
    first = next(rawlog.blocks(port, from_ms, to_ms), None)
    top = head(rawlog, port, protocol, from_ms, to_ms, [] if first is None else [first])
    out.write(json.dumps({"evidence": EXPORT_VERSION, **top}) + "\n")
    written = 0
    for b in rawlog.blocks(port, from_ms, to_ms):
        out.write(json.dumps(block_json(b)) + "\n")
        written += 1
    return written


# ---------------------------------------------------------------- reading it back


def read_evidence(lines: Iterable[str]) -> tuple[dict[str, Any], list[Block]]:
    """(head, blocks) from an export, or from the parts of a fetch (reply
    bodies or whole ``up/reply`` items, one JSON value per line, any order)."""
    top: dict[str, Any] | None = None
    blocks: list[Block] = []
    parts_seen: dict[int, list[Any]] = {}
    for line in lines:
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except ValueError as exc:
            raise RawLogError(f"not JSON: {exc}") from None
        for item in value.get("items", [value]) if isinstance(value, dict) else []:
            part = item.get("result", item) if isinstance(item, dict) else None
            if isinstance(part, dict) and isinstance(part.get("evidence"), dict):
                top = top or part["evidence"]
                parts_seen[int(part["evidence"].get("part", 0))] = part.get("blocks", [])
            elif isinstance(part, dict) and "evidence" in part:
                top = part
            elif isinstance(part, dict) and "body" in part and top is not None:
                blocks.append(block_of(int(top["port"]), part))
    if top is None:
        raise RawLogError("no evidence head (an export's first line, or a fetch's parts)")
    for n in sorted(parts_seen):
        blocks += [block_of(int(top["port"]), item) for item in parts_seen[n]]
    return top, blocks


def check_chain(
    top: Mapping[str, Any], blocks: list[Block], digest: Callable[[bytes], bytes]
) -> str | None:
    """Where the blocks' chain breaks (their own ``h`` values from ``prev``), or None."""
    prev = bytes.fromhex(str(top.get("prev", GENESIS.hex())))
    for n, b in enumerate(blocks, 1):
        if block_hash(digest, prev, b) != b.h:
            return f"block {n} of {len(blocks)} (from {b.first_ms} ms): hash does not match"
        prev = b.h
    return None


def segments_in(blocks: Iterable[Block], from_ms: int, to_ms: int) -> Iterator[Segment]:
    for b in blocks:
        for segment in expand(b.first_ms, b.body):
            if from_ms <= segment.at_ms <= to_ms:
                yield segment


def decode_evidence(lines: Iterable[str], protocol: str | None) -> tuple[int, list[dict[str, Any]]]:
    """(exit status, JSON lines) for ``forecourt decode --evidence FILE``: the
    chain checked, then every segment of the period described frame by frame
    (a run's exchanges once each, then one ``run`` line with its count)."""
    from datetime import UTC, datetime

    from protocols import UnknownProtocol, load_describer
    from uplink.crypto import sm3

    try:
        top, blocks = read_evidence(lines)
    except RawLogError as exc:
        return 2, [{"ok": False, "error": "input", "detail": str(exc)}]
    name = protocol or str(top.get("protocol", ""))
    try:
        describe = load_describer(name)
    except UnknownProtocol as exc:
        return 2, [{"ok": False, "error": "usage", "detail": str(exc)}]
    broken = check_chain(top, blocks, sm3)
    first = {k: top[k] for k in ("port", "protocol", "from_ms", "to_ms", "evicted") if k in top}
    out: list[dict[str, Any]] = [
        {"ok": broken is None, "evidence": first, "blocks": len(blocks), "chain": broken or "ok"}
    ]
    status = 0 if broken is None else 1
    run: dict[str, Any] | None = None
    described: set[tuple[str, bytes]] = set()

    def at(ms: int) -> str:
        return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")

    try:
        for seg in segments_in(blocks, int(top["from_ms"]), int(top["to_ms"])):
            if seg.in_run:
                if run is None:
                    run = {"from_ms": seg.at_ms, "exchanges": 0}
                    described.clear()
                run["exchanges"] = max(run["exchanges"], seg.in_run)
                run["to_ms"] = seg.at_ms
                if (seg.direction, seg.data) in described:
                    continue
                described.add((seg.direction, seg.data))
            elif run is not None:
                out.append({"ok": True, "run": run})
                run = None
            for frame in describe(seg.data):
                line = {"at": at(seg.at_ms), "ms": seg.at_ms, "dir": seg.direction, **frame}
                if seg.in_run:
                    line["in_run"] = True
                if not frame.get("ok"):
                    status = 1
                out.append(line)
    except RawLogError as exc:
        out.append({"ok": False, "error": "block", "detail": str(exc)})
        status = 1
    if run is not None:
        out.append({"ok": True, "run": run})
    return status, out
