"""The raw log (buffer/rawblocks.py, buffer/rawlog.py): what goes in comes
back byte for byte, runs of identical exchanges are kept once, eviction is
oldest first and counted, and an edited block breaks the chain that
``forecourt verify`` checks."""

from __future__ import annotations

import io
import random
import sqlite3
from pathlib import Path

from buffer.rawblocks import BUS, RX, TX, BlockBuilder, expand
from buffer.rawlog import RawLog, rawlog_path, verify_chain
from collector.tools.verify import EXIT_BROKEN, EXIT_OK, verify_rawlog
from uplink.crypto import sm3

POLL = b"\xfa\x01\xe0\x40\x00\x01\x30\x43\x94"
IDLE = b"\xfa\xe0\x01\x00\x00\x06\x31\x02\x00\x01\x00\x02\xe6\xcd"


def line(exchanges: int, start_ms: int = 1_000_000) -> list[tuple[int, int, bytes]]:
    """A polled line: a 4-step cycle of polls, every 7th answer differs."""
    out = []
    for n in range(exchanges):
        at = start_ms + n * 100
        out.append((at, TX, POLL + bytes((n % 4,))))
        answer = IDLE + bytes((n % 4,)) if n % 7 else IDLE + n.to_bytes(4, "big")
        out.append((at + 15 + n % 3, RX, answer[:5]))  # the answer read in two pieces
        out.append((at + 17 + n % 3, RX, answer[5:]))
    return out


def test_a_block_reads_back_every_byte_in_order_and_keeps_runs_once() -> None:
    chunks = line(700)
    builder = BlockBuilder(3)
    for at, direction, data in chunks:
        builder.add(at, direction, data)
    raw = sum(len(d) for _, _, d in chunks)
    sealed = builder.seal()
    assert sealed is not None and builder.empty
    port, first_ms, last_ms, segments, raw_bytes, body = sealed
    assert (port, first_ms, last_ms, segments, raw_bytes) == (
        3,
        1_000_000,
        chunks[-1][0],
        1400,
        raw,
    )
    back = list(expand(first_ms, body))
    tx = [d for _, d_, d in chunks if d_ == TX]
    assert [s.data for s in back if s.direction == "tx"] == tx
    assert b"".join(s.data for s in back if s.direction == "rx") == b"".join(
        d for _, d_, d in chunks if d_ == RX
    )
    assert [s.at_ms for s in back] == sorted(s.at_ms for s in back)
    # Exchanges written as they came keep their exact times; repeats are spread.
    exact = [s for s in back if not s.in_run and s.direction == "tx"]
    assert exact and all(s.at_ms == chunks[3 * ((s.at_ms - 1_000_000) // 100)][0] for s in exact)
    assert sum(s.in_run > 0 for s in back) > len(back) // 2
    assert len(body) * 10 < raw


def test_a_fuelling_line_is_kept_as_deltas_with_exact_times() -> None:
    """Every answer new (a running volume), each one XOR the last of its shape."""
    builder = BlockBuilder(1)
    chunks = []
    for n in range(2000):
        at = 5_000 + n * 100 + n % 3
        chunks.append((at, TX, POLL))
        chunks.append((at + 14 + n % 2, RX, IDLE + (n * 37).to_bytes(4, "big") + bytes((n % 251,))))
    for at, direction, data in chunks:
        builder.add(at, direction, data)
    sealed = builder.seal()
    assert sealed is not None
    back = list(expand(sealed[1], sealed[5]))
    assert [(s.at_ms, s.direction, s.data) for s in back] == [
        (at, "tx" if d == TX else "rx", data) for at, d, data in chunks
    ]
    assert not any(s.in_run for s in back)
    assert len(sealed[5]) * 8 < sum(len(d) for _, _, d in chunks)


def stored(path: Path, *, max_bytes: int = 1 << 30, keep_days: float = 30) -> RawLog:
    log = RawLog(path, sm3, max_bytes=max_bytes, keep_days=keep_days)
    for hour in range(6):
        sealed = []
        for port in (1, 2):
            builder = BlockBuilder(port)
            for at, direction, data in line(200, 3_600_000 * hour):
                builder.add(at, direction, data)
            sealed.append(builder.seal())
        log.append([s for s in sealed if s is not None])
    return log


def test_verify_finds_an_edited_block_and_a_removed_one(tmp_path: Path) -> None:
    store = tmp_path / "orders.sqlite"
    stored(rawlog_path(store)).close()
    out = io.StringIO()
    assert verify_rawlog(store, out, io.StringIO()) == EXIT_OK
    assert "raw log port 1: 6 blocks, 0 evicted (0 bytes): ok" in out.getvalue()
    db = sqlite3.connect(rawlog_path(store))
    db.execute("DELETE FROM blocks WHERE id = (SELECT min(id) FROM blocks WHERE port = 2)")
    (body,) = db.execute("SELECT body FROM blocks WHERE port = 1 ORDER BY id LIMIT 1 OFFSET 3")
    db.execute(  # one byte of the fourth block, as a hand with the sqlite3 shell would
        "UPDATE blocks SET body = ? WHERE port = 1 AND id ="
        " (SELECT id FROM blocks WHERE port = 1 ORDER BY id LIMIT 1 OFFSET 3)",
        (bytes(body[0])[:-1] + bytes((body[0][-1] ^ 1,)),),
    )
    db.commit()
    db.close()
    out = io.StringIO()
    assert verify_rawlog(store, out, io.StringIO()) == EXIT_BROKEN
    text = out.getvalue()
    assert "raw log port 1: 4 blocks" in text and "altered, or a block before it missing" in text
    assert "raw log port 2: 1 blocks" in text and "removed without being counted" in text
    assert text.endswith("2 ports, 2 broken\n")


def test_eviction_is_oldest_first_counted_and_keeps_the_chain(tmp_path: Path) -> None:
    path = tmp_path / "e.sqlite"
    log = stored(path, keep_days=3 / 24)  # three hours of age: the first blocks go
    assert log.evicted > 0
    for port in (1, 2):
        report = verify_chain(log, port)
        assert report.broken is None
        assert report.evicted.blocks > 0 and report.evicted.size > 0
        assert report.blocks + report.evicted.blocks == 6
        assert all(b.last_ms >= 5 * 3_600_000 - 3 * 3_600_000 for b in log.blocks(port))
    log.close()
    small = RawLog(tmp_path / "small.sqlite", sm3, max_bytes=64 * 1024, keep_days=30)
    rng = random.Random(1)
    for n in range(40):  # a busy line's blocks: 4 KiB that do not compress
        small.append([(1 + n % 2, n * 1000, n * 1000 + 999, 10, 9000, rng.randbytes(4096))])
    assert small.bytes_in_use() <= 64 * 1024
    assert small.evicted > 20
    firsts = [b.first_ms for p in (1, 2) for b in small.blocks(p)]
    assert min(firsts) == (small.evicted) * 1000  # the oldest went, whatever the port
    assert [verify_chain(small, p).broken for p in (1, 2)] == [None, None]
    assert sum(small.eviction(p).blocks for p in (1, 2)) == small.evicted
    small.close()


def test_unanswered_polls_and_a_tapped_bus_read_back_too() -> None:
    """Exchanges of one segment (a poll nobody answered, a tap's stream)
    between exchanges of two, all in line order."""
    chunks = []
    for n in range(300):
        at = 10_000 + n * 100
        chunks.append((at, TX, POLL))  # unanswered: one segment
        if n % 5 == 0:
            chunks.append((at + 30, RX, IDLE))
        chunks.append((at + 60, BUS, bytes((0xFA, n % 3))))
    builder = BlockBuilder(4)
    for at, direction, data in chunks:
        builder.add(at, direction, data)
    sealed = builder.seal()
    assert sealed is not None
    back = [(s.direction, s.data) for s in expand(sealed[1], sealed[5])]
    assert back == [(("tx", "rx", "bus")[d], data) for _, d, data in chunks]
