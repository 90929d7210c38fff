"""A line carrying noise costs a few KiB of log a minute, and every bad
frame is still counted (collector/logs.py ``Repeats``, docs/security.md).

In-process: a real listening port on a pty, the Sinopec bus monitor, a real
store, the daemon's JSON log rendering; three minutes of random bytes at
9 600 baud (960 bytes a second) on simulated time — the aggregator's clock
is the bytes fed divided by the line's rate. Against the real daemon: a poll
port fed noise as fast as a pty takes it logs one line per kind, and
``forecourt status`` / ``ports`` carry the counts.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import random
import threading
import time
import tty
from collections import Counter
from datetime import timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import structlog

from buffer.store import OrderStore
from collector import logs
from collector.device.serialfd import LineSettings
from collector.logs import Repeats
from collector.station import nozzle_records, port_alarms, port_writer, sink
from collector.station.listen import ListenPort
from collector.station.nozzles import NozzleTable
from collector.station.sink import PortSink
from hil import stack
from hil.stack import Mosquitto
from protocols import load_monitor

#: 9 600 baud, 8N1: ten bits a byte.
BYTES_PER_S = 960
MINUTES = 3
#: Bytes a read returns: a UART's FIFO hands over a few bytes at a time.
SLICE = 48
#: "A few KiB of log a minute" for one noisy line.
BUDGET_PER_MIN = 4096


def test_three_minutes_of_line_noise_cost_a_few_kib_of_log_a_minute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = io.StringIO()
    logger = structlog.wrap_logger(structlog.PrintLogger(out), processors=logs.processors("json"))
    fed = [0]
    errors = Repeats(
        logger, "protocol_error", source_field="port", clock=lambda: fed[0] / BYTES_PER_S
    )
    monkeypatch.setattr(sink, "PROTOCOL_ERRORS", errors)
    # Every line the port's sink and its parts write is measured.
    for module in (sink, port_writer, port_alarms, nozzle_records):
        monkeypatch.setattr(module, "log", logger)
    master, slave = os.openpty()
    tty.setraw(master)
    store = OrderStore(tmp_path / "store.sqlite")
    port_sink = PortSink(
        number=7,
        store=store,
        nozzles=NozzleTable(),
        station="S",
        tz=timezone(timedelta(hours=8)),
        on_commit=lambda: None,
    )
    port = ListenPort(
        number=7,
        line=LineSettings(os.ttyname(slave), 9600, 8, "N", 1),
        monitor=load_monitor("sinopec")([1]),
        sink=port_sink,
    )
    rng = random.Random(24)
    per_minute: list[int] = []

    async def main() -> None:
        await port.open()
        task = asyncio.create_task(port.run())
        loop = asyncio.get_running_loop()
        for _ in range(MINUTES):
            before = out.tell()
            for _ in range(60 * BYTES_PER_S // SLICE):
                os.write(master, rng.randbytes(SLICE))
                fed[0] += SLICE
                deadline = loop.time() + 10
                while port.received < fed[0] and loop.time() < deadline:
                    await asyncio.sleep(0.001)  # polls the condition, it sets no pace
                assert port.received == fed[0], "the port read every byte"
            per_minute.append(out.tell() - before)
        before = out.tell()
        errors.close()  # the last window's summary
        per_minute[-1] += out.tell() - before
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    try:
        asyncio.run(main())
    finally:
        port.close()
        store.close()
        os.close(master)
        os.close(slave)
    lines = [json.loads(text) for text in out.getvalue().splitlines()]
    counted = {k: n for k, n in port_sink.stats.errors.items() if k != "timeout"}
    assert sum(counted.values()) > 1000, f"the noise was real: {counted}"
    assert errors.of_source(7) == counted, "every bad frame counted, by kind"
    assert port.parsing, "noise never stops the parser"
    assert max(per_minute) <= BUDGET_PER_MIN, per_minute
    logged: Counter[str] = Counter()
    for line in lines:
        if line["event"] == "protocol_error":
            logged[line["kind"]] += 1
        elif line["event"] == "protocol_error_repeated":
            assert line["port"] == 7 and line["window_s"] == logs.REPEAT_WINDOW_S
            logged[line["kind"]] += line["more"]
    assert logged == counted, "the lines in full and the summaries add up to the counts"
    firsts = [line for line in lines if line["event"] == "protocol_error"]
    assert len(firsts) <= MINUTES * len(counted), "each kind in full once a minute"
    assert {line["level"] for line in firsts} == {"warning"} and all("detail" in f for f in firsts)
    assert not [line for line in lines if not line["event"].startswith("protocol_error")], lines


def noise(master: int, stop: threading.Event) -> None:
    """Random bytes as fast as the pty takes them; what the daemon asks is drained."""
    rng = random.Random(7)
    os.set_blocking(master, False)
    while not stop.is_set():
        with contextlib.suppress(BlockingIOError):
            os.write(master, rng.randbytes(256))
        try:
            while os.read(master, 4096):
                pass
        except BlockingIOError:
            stop.wait(0.005)


def test_the_daemon_logs_a_noisy_poll_port_once_per_kind_and_counts_it(
    tmp_path: Path, broker: Mosquitto
) -> None:
    from collector.tools.techcli import ask

    master, slave = os.openpty()
    tty.setraw(master)
    link = tmp_path / "pump1"
    link.symlink_to(os.ttyname(slave))
    stop = threading.Event()
    feeder = threading.Thread(target=noise, args=(master, stop))
    sock = tmp_path / "control.sock"  # stack.collector's --set control.socket
    collector = stack.collector(
        tmp_path,
        stack.ROOT / "config" / "demo.toml",
        [
            f"store.path={tmp_path / 'store.sqlite'}",
            f"ports.0.device={link}",
            f"uplink.port={broker.port}",
            "log.format=json",
        ],
    )

    def query(name: str) -> Any:
        reply = ask(str(sock), {"query": name})
        assert reply["ok"], reply
        return reply["data"]

    try:
        stack.wait_until(lambda: "port_open" in collector.log_path.read_text(), 30, "port_open")
        stack.wait_until(sock.exists, 30, "control socket")
        feeder.start()
        stack.wait_until(
            lambda: sum(query("ports")[0]["errors"].values()) >= 500, 60, "500 bad frames"
        )
        stop.set()
        feeder.join()

        seen: list[Any] = [None, None, None, time.monotonic()]

        def settled() -> bool:
            """The last noise in the pty read: the counts still for a second."""
            ports, status = query("ports"), query("status")
            errors = {k: n for k, n in ports[0]["errors"].items() if k != "timeout"}
            if errors != seen[2]:
                seen[:] = [ports, status, errors, time.monotonic()]
            return time.monotonic() - seen[3] > 1.0

        stack.wait_until(settled, 20, "the counts settle")
        ports, status = seen[:2]
    finally:
        stop.set()
        if feeder.is_alive():
            feeder.join()
        collector.stop()
        os.close(master)
        os.close(slave)
    errors = {k: n for k, n in ports[0]["errors"].items() if k != "timeout"}
    counted = status["log"]["protocol_error"]
    assert counted["kinds"] == errors, (counted, errors)
    lines = [json.loads(t) for t in collector.log_path.read_text().splitlines() if t[:1] == "{"]
    firsts = [line for line in lines if line["event"] == "protocol_error"]
    assert sorted(line["kind"] for line in firsts) == sorted(errors), "one line per kind"
    assert counted["lines"] == len(firsts) <= len(errors)
    logged = Counter(line["kind"] for line in firsts)
    for line in lines:
        if line["event"] == "protocol_error_repeated":  # written at the stop
            logged[line["kind"]] += line["more"]
    assert logged == errors, "the lines in full and the summaries add up to the counts"
