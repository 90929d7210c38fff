"""What a platform does with each message: check, open, dedupe, verify chains.

Sans-IO like the collector's own protocols: :meth:`Receiver.handle` takes a
topic and a payload and returns the lines to print, so the rules are tested
without a broker. The rules are platform-interface.md's, implemented again
in hil/platform/contract.py from the contract's text (never with the
collector's own uplink code, so a bug both would share cannot pass): reject
a message whose tag fails, whose ``dev`` differs from the topic, or whose
``seq`` was already accepted; deduplicate records on (``dev``, ``type``,
``rid``); follow each nozzle's SM3 chain and say where it does not hold.

A repeated record is not printed as a record again, but reported: one line
``{"duplicate": {"dev", "type", "rid", "seq", "same"}}``, ``same`` false
when the copy differs from the first one in anything but ``resent`` (the
collector sent two different records under one idempotency key — a loss the
platform would never see, hidden by deduplication).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from hil.platform.contract import (
    GENESIS,
    NotCanonical,
    Rejected,
    open_envelope,
    record_hash,
    strict_json,
)

#: Accepted seqs remembered per device for replay detection. A platform would
#: keep a high-water mark plus a window; a test receiver can afford a set.
MAX_SEEN_SEQ = 1_000_000

Line = dict[str, Any]


def _content(record: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k != "resent"}


@dataclass
class Receiver:
    keys: Mapping[str, bytes]
    seen_seq: dict[str, set[int]] = field(default_factory=dict)
    #: (dev, type, rid) → the first copy, without ``resent``.
    first: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)
    chain_heads: dict[tuple[str, str], dict[int, str]] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=dict)

    def _count(self, name: str) -> None:
        self.counters[name] = self.counters.get(name, 0) + 1

    def handle(self, topic: str, payload: bytes) -> tuple[list[Line], list[Line]]:
        """Return (lines for stdout, problems for stderr)."""
        parts = topic.split("/")
        if len(parts) < 3 or parts[0] != "forecourt" or parts[1] != "v1":
            return [], [{"reject": "bad_topic", "topic": topic}]
        dev = parts[2]
        if parts[3:] == ["state"]:
            try:
                state = strict_json(payload) if payload else None
            except ValueError:
                return [], [{"reject": "bad_json", "topic": topic}]
            return [{"dev": dev, "type": "state", "body": state}], []
        try:
            opened = open_envelope(payload, self.keys, topic_dev=dev)
        except Rejected as exc:
            self._count(f"reject_{exc.code}")
            return [], [{"reject": exc.code, "topic": topic, "message": str(exc)}]
        if parts[3:] != ["up", opened.type]:
            return [], [{"reject": "type_mismatch", "topic": topic, "type": opened.type}]
        seen = self.seen_seq.setdefault(dev, set())
        if opened.seq in seen:
            self._count("reject_replay")
            return [], [{"reject": "replay", "topic": topic, "seq": opened.seq}]
        if len(seen) >= MAX_SEEN_SEQ:
            seen.clear()
        seen.add(opened.seq)
        base = {"dev": dev, "type": opened.type, "seq": opened.seq, "ts": opened.ts}
        if opened.type == "heartbeat":
            return [{**base, "body": opened.body}], []
        items = opened.body.get("items")
        if not isinstance(items, list) or not all(isinstance(r, dict) for r in items):
            return [], [{"reject": "bad_body", "topic": topic, "seq": opened.seq}]
        out: list[Line] = []
        problems: list[Line] = []
        for record in items:
            rid = str(record.get("rid"))
            key = (dev, opened.type, rid)
            first = self.first.get(key)
            if first is not None:
                same = first == _content(record)
                self._count("duplicates" if same else "duplicates_differing")
                out.append({"duplicate": {**base, "rid": rid, "same": same}})
                if not same:
                    problems.append({"duplicate_differs": rid, "dev": dev, "type": opened.type})
                continue
            self.first[key] = _content(record)
            line: Line = dict(base)
            if opened.type == "order":
                line["chain"] = self._chain(dev, record)
                if line["chain"] != "ok":
                    problems.append({"chain": line["chain"], "dev": dev, "rid": rid})
            line["record"] = record
            out.append(line)
        return out, problems

    def _chain(self, dev: str, record: Mapping[str, Any]) -> str:
        """``ok``, ``altered`` (h does not match), ``gap`` or ``broken`` (prev)."""
        try:
            if record.get("h") != record_hash(record):
                return "altered"
        except NotCanonical:
            return "altered"  # a float or the like: it cannot be what was hashed
        heads = self.chain_heads.setdefault((dev, str(record.get("nozzle"))), {})
        nseq = record.get("nseq")
        if not isinstance(nseq, int) or isinstance(nseq, bool) or nseq < 1:
            return "altered"
        heads[nseq] = str(record["h"])
        if nseq == 1:
            return "ok" if record.get("prev") == GENESIS else "broken"
        previous = heads.get(nseq - 1)
        if previous is None:
            return "gap"  # the previous order never arrived: ask for a resend
        return "ok" if record.get("prev") == previous else "broken"
