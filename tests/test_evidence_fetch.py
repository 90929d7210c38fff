"""``evidence.fetch``, ``capture export`` and ``decode --evidence``: the raw
log of a period gives back exactly the sales of that period.

A Sinopec line (the real driver against the simulator's responder, polled
every 100 ms on a virtual clock) feeds the recorder; a signed
``evidence.fetch`` for the period around the middle sales answers with
parts stored as replies; the parts decode (chain checked) to the records of
exactly those sales. The same period through the CLI: ``forecourt capture
export`` then ``forecourt decode --evidence``.
"""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from buffer.rawlog import RawLog, rawlog_path
from collector.station import evidence as ev
from collector.station import evidence_io
from collector.station.evidence_io import decode_evidence, register_evidence_fetch
from hil.dispenser.model import PumpModel
from hil.dispenser.sinopec import SinopecResponder
from hil.platform.commands import command_body, seal_command
from hil.stack import ROOT
from protocols.events import Sale
from protocols.sinopec.driver import SinopecPoller
from uplink import commands as c
from uplink.crypto import sm2_generate, sm3

DEV, KID, KEY = "dev-001", "k1", bytes(range(16))
PLATFORM_PRIV, PLATFORM_PUB = sm2_generate()
T0 = 1_796_000_000_000  # epoch ms of the line's first poll
FILL_EVERY_S = 40


def run_line(recorder: ev.EvidenceRecorder, clock: list[int], fills: int) -> list[tuple[int, Sale]]:
    """Poll a two-nozzle pump every 100 ms, one short fill a minute; the
    sales read, with the time their record came in."""
    rng = random.Random(7)
    pump = PumpModel.create(1, 2, rng)
    responder, driver = SinopecResponder([pump]), SinopecPoller([1])
    sales: list[tuple[int, Sale]] = []
    hang_at: float | None = None
    now = 0.0
    while now < fills * FILL_EVERY_S:
        if hang_at is None and int(now * 10) % (FILL_EVERY_S * 10) == 50:
            nozzle = pump.nozzle(1 + len(sales) % 2)
            pump.lift(nozzle, rng.randint(1000, 6000))
            pump.start_fuel(nozzle, now + 1, 4)
            hang_at = now + 7
        if hang_at is not None and now >= hang_at:
            pump.hang_up(
                pump.nozzle(1 + len(sales) % 2), datetime(2026, 12, 7) + timedelta(seconds=now)
            )
            hang_at = None
        request = driver.next_request()
        if request is not None:
            clock[0] = T0 + int(now * 1000)
            recorder.feed(1, "tx", request)
            answer = responder.receive_data(request, now)
            clock[0] += 15
            if answer:
                recorder.feed(1, "rx", answer)
            for event in driver.receive_data(answer) if answer else driver.response_timeout():
                if isinstance(event, Sale):
                    driver.sale_committed(event)
                    sales.append((clock[0], event))
        if int(now * 10) % 10 == 0:
            recorder.tick(clock[0])
        now = round(now + 0.1, 1)
    recorder.flush()
    return sales


@pytest.fixture
def line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[RawLog, ev.EvidenceRecorder, list[tuple[int, Sale]]]:
    clock = [T0]
    monkeypatch.setattr(ev, "_now_ms", lambda: clock[0])
    rawlog = RawLog(rawlog_path(tmp_path / "orders.sqlite"), sm3, max_bytes=1 << 30, keep_days=30)
    recorder = ev.EvidenceRecorder(rawlog, block_s=45)  # blocks cross the period's edges
    sales = run_line(recorder, clock, fills=4)
    assert len(sales) == 4
    return rawlog, recorder, sales


def sold(lines: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(order number, amount) of every transaction record the lines show, once each."""
    seen = {
        (line["values"]["order_no"], line["values"]["amount"])
        for line in lines
        if line.get("message") == "record"
    }
    return sorted(seen)


def test_evidence_fetch_gives_back_exactly_the_sales_of_the_period(
    line: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rawlog, recorder, sales = line
    processor = c.CommandProcessor(
        device_id=DEV,
        platform_public=PLATFORM_PUB,
        keys={KID: KEY},
        replay=c.ReplayLog(tmp_path / "replay.sqlite"),
        bucket=c.TokenBucket(1000.0, 1000),
    )
    replies: list[dict[str, Any]] = []
    register_evidence_fetch(
        processor, rawlog, recorder, {1: "sinopec"}, lambda r: replies.append(r) or True
    )
    # The period from 20 s before the second sale's record to 20 s after the third.
    from_ms, to_ms = sales[1][0] - 20_000, sales[2][0] + 20_000
    body = command_body(
        "evidence.fetch",
        {"port": 1, "from": from_ms, "to": to_ms},
        private=PLATFORM_PRIV,
        public=PLATFORM_PUB,
    )
    reply = asyncio.run(processor.handle(seal_command(body, dev=DEV, kid=KID, key=KEY, seq=1)))
    assert reply is not None and reply["ok"] is True, reply
    summary = reply["result"]
    assert summary["parts"] == len(replies) >= 1 and summary["blocks"] >= 2
    assert all(r["id"] == body["id"] and r["ok"] for r in replies)
    status, lines = decode_evidence([json.dumps(r) for r in replies], None)
    assert status == 0 and lines[0]["chain"] == "ok"
    assert all(from_ms <= line["ms"] <= to_ms for line in lines if "ms" in line)
    expected = sorted((s.order_no, f"{s.amount:.2f}") for _, s in sales[1:3])
    assert sold(lines) == expected
    # A part altered on the way: the chain says so.
    replies[0]["result"]["blocks"][0]["last_ms"] += 1
    status, lines = decode_evidence([json.dumps(r) for r in replies], None)
    assert status == 1 and "hash does not match" in lines[0]["chain"]
    bad = command_body(
        "evidence.fetch",
        {"port": 9, "from": from_ms, "to": to_ms},
        private=PLATFORM_PRIV,
        public=PLATFORM_PUB,
    )
    refused = asyncio.run(processor.handle(seal_command(bad, dev=DEV, kid=KID, key=KEY, seq=2)))
    assert refused is not None and refused["error"]["code"] == c.BAD_REQUEST
    # A period past the bound is refused before any of it is read, its size named.
    monkeypatch.setattr(evidence_io, "MAX_FETCH_BYTES", summary["bytes"] - 1)
    again = command_body(
        "evidence.fetch",
        {"port": 1, "from": from_ms, "to": to_ms},
        private=PLATFORM_PRIV,
        public=PLATFORM_PUB,
    )
    large = asyncio.run(processor.handle(seal_command(again, dev=DEV, kid=KID, key=KEY, seq=3)))
    assert large is not None and large["error"]["code"] == "TOO_LARGE"
    assert f"holds {summary['bytes']} bytes" in large["error"]["message"]
    processor.replay.close()


def test_capture_export_then_decode_through_the_cli(line: Any, tmp_path: Path) -> None:
    rawlog, _, sales = line
    rawlog.close()
    iso = lambda ms: datetime.fromtimestamp(ms / 1000, UTC).isoformat()  # noqa: E731
    out = tmp_path / "port1.evidence"
    done = subprocess.run(
        [sys.executable, "-m", "collector", "capture", "export",
         "--config", str(tmp_path / "none.toml"), "--store", str(tmp_path / "orders.sqlite"),
         "--port", "1",
         "--from", iso(sales[0][0] - 1000), "--to", iso(sales[1][0] + 1000), "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    decoded = subprocess.run(
        [sys.executable, "-m", "collector", "decode", "--evidence", str(out),
         "--protocol", "sinopec"],
        cwd=ROOT, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    lines = [json.loads(x) for x in decoded.stdout.splitlines()]
    assert decoded.returncode == 0 and lines[0]["chain"] == "ok"
    assert sold(lines) == sorted((s.order_no, f"{s.amount:.2f}") for _, s in sales[:2])


def test_blocks_are_sealed_and_stored_off_the_event_loop(tmp_path: Path) -> None:
    """Sealing a busy block (LZMA2) takes tens of ms: the recorder's turn runs
    it in a worker thread, and what it reads after is what it committed."""
    rawlog = RawLog(tmp_path / "e.sqlite", sm3, max_bytes=1 << 30, keep_days=30)
    recorder = ev.EvidenceRecorder(rawlog)
    recorder.feed(2, "tx", b"\x01\x02")
    recorder.feed(2, "rx", b"\x03")

    async def turn() -> tuple[int, int]:
        loop_thread = threading.get_ident()
        worker, stored = await recorder.sealed_then(
            lambda: (threading.get_ident(), len(list(rawlog.blocks(2)))), seal_all=True
        )
        assert worker != loop_thread
        return worker, stored

    assert asyncio.run(turn())[1] == 1
    assert recorder.stats()["blocks_stored"] == 1 and recorder.stats()["pending_bytes"] == 0
    rawlog.close()


def test_what_the_raw_log_loses_is_counted_and_alarmed_once_then_cleared(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Errors are data: chunks dropped for a full buffer and appends the file
    refuses raise EVIDENCE_FAULT once, with the counts; a clean turn clears it."""
    rawlog = RawLog(tmp_path / "e.sqlite", sm3, max_bytes=1 << 30, keep_days=30)
    recorder = ev.EvidenceRecorder(rawlog)
    alarms: list[tuple[bool, dict[str, Any]]] = []
    recorder.on_alarm = lambda raised, detail: alarms.append((raised, detail))
    monkeypatch.setattr(ev, "MAX_PENDING_BYTES", 4)
    for _ in range(3):
        recorder.feed(1, "tx", b"\x01\x02\x03")  # the second and third do not fit
    recorder.flush()
    recorder.report()
    assert alarms == [
        (True, {"dropped_chunks": 2, "lost_blocks": 0, "append_errors": 0, "error": None})
    ]
    refuse = "INSERT INTO blocks"

    def refusing(blocks: Any) -> int:
        raise ev.RawLogError(f"{refuse}: disk I/O error")

    monkeypatch.setattr(rawlog, "append", refusing)
    recorder.feed(1, "tx", b"\x04")
    recorder.flush()
    recorder.report()  # still raised: one alarm per episode
    assert len(alarms) == 1 and recorder.stats()["unstored_blocks"] == 1
    monkeypatch.undo()
    recorder.flush()  # the file takes them again
    recorder.report()
    assert alarms[1] == (False, {"dropped_chunks": 2, "lost_blocks": 0, "append_errors": 1})
    assert [b.segments for b in rawlog.blocks(1)] == [1, 1]
    rawlog.close()


def test_a_failing_turn_is_alarmed_and_the_recorder_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug in a turn must not stop the collector: counted, alarmed, and the
    next turns run."""
    rawlog = RawLog(tmp_path / "e.sqlite", sm3, max_bytes=1 << 30, keep_days=30)
    recorder = ev.EvidenceRecorder(rawlog)
    monkeypatch.setattr(ev, "FLUSH_S", 0)
    turns: list[int] = []

    def boom(pending: Any, now_ms: int, seal_all: bool) -> int:
        turns.append(now_ms)
        raise KeyError("a bug")

    monkeypatch.setattr(recorder, "_build", boom)

    async def main() -> list[tuple[bool, dict[str, Any]]]:
        alarms: list[tuple[bool, dict[str, Any]]] = []
        raised = asyncio.Event()

        def on_alarm(up: bool, detail: dict[str, Any]) -> None:
            alarms.append((up, detail))
            raised.set()

        recorder.on_alarm = on_alarm
        task = asyncio.create_task(recorder.run())
        await asyncio.wait_for(raised.wait(), 5)
        for _ in range(10_000):  # the task goes on turning (a thread hop yields to it)
            if len(turns) >= 3:
                break
            await asyncio.to_thread(len, turns)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return alarms

    alarms = asyncio.run(main())
    assert alarms[0][0] is True and alarms[0][1]["error"] == "KeyError: 'a bug'"
    assert len(turns) >= 4  # three turns and the stop's
    rawlog.close()
