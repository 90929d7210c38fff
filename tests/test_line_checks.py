"""Line self-checks (SPEC F1): LINE_SILENT and LINE_REWIRED.

Unit tests of the pure watch, then real parts: simulators on ptys, the
collector, mosquitto and the receiver. A relay whose dispenser leg is cut
and a tap whose bus goes quiet raise and clear LINE_SILENT; a relay wired to
a DART station while configured for Sinopec, and a tap on a bus of another
pump address, raise LINE_REWIRED (cleared when the right station is back);
a noisy but correct line (a tap; poll ports of all three protocols) raises
neither; a poll port whose pump goes silent or is replaced by one of another
protocol says LINE_SILENT.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

from collector.station.linecheck import (
    REWIRED_MIN_BYTES,
    LineWatch,
    Sample,
)
from hil import stack
from hil.stack import Mosquitto

DEMO_CONFIG = stack.ROOT / "config" / "demo.toml"
DEMO_KEYS = stack.ROOT / "config" / "demo-keys.toml"


class Line:
    """Cumulative counters of a fake port, advanced one second at a time."""

    def __init__(self, watch: LineWatch, monitor: bool = False) -> None:
        self.watch = watch
        self.t = 0.0
        self.rx = self.other = self.good = self.bad = 0
        self.own: int | None = 0 if monitor else None
        self.foreign: int | None = 0 if monitor else None
        self.addresses: tuple[int, ...] = ()
        self.online = True
        self.out: list[tuple[str, bool, dict[str, Any]]] = []

    def tick(self, seconds: int = 1, **per_s: int) -> list[tuple[str, bool]]:
        got = []
        for _ in range(seconds):
            self.t += 1
            self.rx += per_s.get("rx", 0)
            self.other += per_s.get("other", 0)
            self.good += per_s.get("good", 0)
            self.bad += per_s.get("bad", 0)
            if self.own is not None:
                self.own += per_s.get("own", 0)
                self.foreign = (self.foreign or 0) + per_s.get("foreign", 0)
            sample = Sample(
                self.t, self.online, self.rx, self.other, self.good, self.bad,
                self.own, self.foreign, self.addresses,
            )  # fmt: skip
            found = self.watch.feed(sample)
            self.out += found
            got += [(code, raised) for code, raised, _ in found]
        return got


def watch(**kw: Any) -> LineWatch:
    return LineWatch(protocol="sinopec", addresses=[1], silent_after_s=5, rewired_after_s=10, **kw)


def test_silence_after_traffic_raises_and_traffic_clears() -> None:
    line = Line(watch())
    assert line.tick(30) == [], "a line that never had traffic is not alarmed"
    assert line.tick(3, rx=100, good=5) == []
    assert line.tick(4) == []
    assert line.tick(2) == [("LINE_SILENT", True)]
    assert line.tick(10) == [], "raised once"
    assert line.tick(1, rx=10, good=1) == [("LINE_SILENT", False)]


def test_a_transition_the_store_refused_comes_again_at_the_next_tick() -> None:
    """LineCheckTask undoes a raise or clear its sink could not store: the next
    sample that still shows it emits it again (nothing lost to a full disk)."""
    line = Line(watch())
    line.tick(3, rx=100, good=5)
    assert line.tick(6) == [("LINE_SILENT", True)]
    line.watch.undo("LINE_SILENT", True)
    assert line.tick(1) == [("LINE_SILENT", True)], "raised again"
    assert line.tick(1, rx=10, good=1) == [("LINE_SILENT", False)]
    line.watch.undo("LINE_SILENT", False)
    assert line.tick(1, rx=10, good=1) == [("LINE_SILENT", False)], "cleared again"


def test_silence_clock_stops_while_the_port_is_offline() -> None:
    line = Line(watch())
    line.tick(3, rx=100, good=5)
    line.online = False
    assert line.tick(20) == [], "PORT_OFFLINE says it"
    line.online = True
    assert line.tick(4) == []
    assert line.tick(2) == [("LINE_SILENT", True)], "silent since the reopen"


def test_relay_silence_says_whether_the_pos_still_asks() -> None:
    line = Line(watch())
    line.tick(3, rx=100, other=50, good=5)
    line.tick(6, other=50)
    ((code, raised, detail),) = line.out
    assert (code, raised, detail["side"], detail["pos_bytes"]) == (
        "LINE_SILENT",
        True,
        "dispenser",
        "flowing",
    )


def test_another_protocol_raises_rewired_and_the_right_one_clears_it() -> None:
    line = Line(watch())
    assert line.tick(15, rx=200, good=10, bad=1) == []
    assert line.tick(8, rx=200, bad=10) == [], "still 10 % good frames in the window"
    assert line.tick(3, rx=200, bad=10) == [("LINE_REWIRED", True)]
    (_, _, detail) = line.out[-1]
    assert detail["reason"] == "protocol"
    assert detail["expected"] == {"protocol": "sinopec", "addresses": [1]}
    assert detail["seen"]["good_frames"] <= 0.1 * detail["seen"]["bad_frames"] + 1
    assert line.tick(5, rx=200, good=30) == [("LINE_REWIRED", False)]


def test_a_noisy_line_of_the_right_protocol_never_alarms() -> None:
    line = Line(watch())
    # 30 % of frames hit: far noisier than the simulators' 1 % bytes.
    assert line.tick(120, rx=300, good=7, bad=3) == []


def test_a_few_stray_bytes_are_not_a_protocol() -> None:
    line = Line(watch())
    per_s = REWIRED_MIN_BYTES // 20
    assert line.tick(60, rx=per_s, bad=1) == []


def test_only_foreign_pumps_raise_rewired_by_address() -> None:
    line = Line(watch(), monitor=True)
    assert line.tick(12, rx=100, good=10, own=5, foreign=5) == [], "a neighbour pump is fine"
    line.addresses = (5,)
    assert line.tick(11, rx=100, good=10, foreign=10) == [("LINE_REWIRED", True)]
    (_, _, detail) = line.out[-1]
    assert detail["reason"] == "address" and detail["seen"]["addresses"] == [5]
    assert line.tick(1, rx=100, good=10, own=5) == [("LINE_REWIRED", False)]


# ---------------------------------------------------------------- real parts


def overrides(tmp_path: Path, broker: Mosquitto, **port: str) -> list[str]:
    return [
        f"store.path={tmp_path}/store.sqlite",
        f"uplink.port={broker.port}",
        "uplink.reconnect_min_s=0.2",
        "log.format=json",
        "ports.0.line_silent_after_s=2",
        "ports.0.line_rewired_after_s=3",
        *(f"ports.0.{k}={v}" for k, v in port.items()),
    ]


def line_alarms(receiver: stack.Proc) -> list[tuple[str, str]]:
    return [
        (x["record"]["code"], x["record"]["state"])
        for x in receiver.snapshot()
        if x.get("type") == "alarm" and x["record"]["code"].startswith("LINE_")
    ]


def records(receiver: stack.Proc, code: str) -> list[dict[str, Any]]:
    return [
        x["record"]
        for x in receiver.snapshot()
        if x.get("type") == "alarm" and x["record"]["code"] == code
    ]


def wait_alarms(receiver: stack.Proc, want: list[tuple[str, str]], what: str) -> None:
    stack.wait_until(lambda: line_alarms(receiver) == want, 60, f"{what}: {want}")


def test_relay_dispenser_leg_cut_raises_and_clears_line_silent(
    tmp_path: Path, broker: Mosquitto
) -> None:
    """The dispenser's leg of a relay goes silent for 6 s while the POS keeps
    asking (``line-cut``): LINE_SILENT raised, then cleared; orders keep flowing."""
    pump_link, pos_link = tmp_path / "pump", tmp_path / "pos"
    receiver = stack.receiver(tmp_path, broker.port, DEMO_KEYS, client_id=f"rx-{tmp_path.name}")
    sim = stack.dispenser(
        tmp_path, pump_link, orders=6, nozzles=1, rate=1, seed=3,
        extra=["--fault", "at=4:line-cut=6"],
    )  # fmt: skip
    pos = stack.pos(tmp_path, pos_link, addresses="1")
    collector = stack.collector(
        tmp_path,
        DEMO_CONFIG,
        overrides(tmp_path, broker, mode="relay", device=str(pump_link), pos_device=str(pos_link)),
    )
    try:
        wait_alarms(receiver, [("LINE_SILENT", "raised"), ("LINE_SILENT", "cleared")], "cut")
        sim.wait_lines(lambda line: "order_no" in line, 6, 60)
        receiver.wait_lines(lambda line: line.get("type") == "order", 6, 60)
    finally:
        pos.stop()
        sim.stop()
        collector.stop()
        receiver.stop()
    (raised,) = [a for a in records(receiver, "LINE_SILENT") if a["state"] == "raised"]
    assert raised["source"] == "p01"
    assert raised["detail"]["side"] == "dispenser" and raised["detail"]["pos_bytes"] == "flowing"
    assert records(receiver, "LINE_REWIRED") == []


def test_tap_on_a_noisy_bus_gone_quiet_is_silent_never_rewired(
    tmp_path: Path, broker: Mosquitto
) -> None:
    """A listening tap on a correct bus with 1 % of the pump's bytes hit: no
    LINE_REWIRED. The POS stopped (SIGSTOP) the bus is quiet: LINE_SILENT;
    resumed (SIGCONT): cleared."""
    pump_link, pos_link, tap_link = tmp_path / "pump", tmp_path / "pos", tmp_path / "tap"
    receiver = stack.receiver(tmp_path, broker.port, DEMO_KEYS, client_id=f"rx-{tmp_path.name}")
    sim = stack.dispenser(
        tmp_path, pump_link, orders=10, nozzles=2, rate=2, seed=5,
        extra=["--bit-error-rate", "1e-3"],
    )  # fmt: skip
    pos = stack.pos(tmp_path, pos_link, addresses="1")
    bus = stack.bus(tmp_path, pos=pos_link, pump=pump_link, tap=tap_link)
    collector = stack.collector(
        tmp_path, DEMO_CONFIG, overrides(tmp_path, broker, mode="listen", device=str(tap_link))
    )
    try:
        receiver.wait_lines(lambda line: line.get("type") == "order", 5, 60)
        assert line_alarms(receiver) == [], "a noisy line of the right protocol"
        pos.signal(signal.SIGSTOP)
        wait_alarms(receiver, [("LINE_SILENT", "raised")], "the bus quiet")
        pos.signal(signal.SIGCONT)
        wait_alarms(receiver, [("LINE_SILENT", "raised"), ("LINE_SILENT", "cleared")], "back")
        sim.wait_lines(lambda line: "order_no" in line, 10, 60)
        receiver.wait_lines(lambda line: line.get("type") == "order", 8, 60)
    finally:
        pos.signal(signal.SIGCONT)
        for proc in (collector, pos, bus, sim, receiver):
            proc.stop()
    errors = collector.log_path.read_text()
    assert "bad_crc" in errors or "garbage" in errors, "the noise was real"
    assert records(receiver, "LINE_REWIRED") == []
    (raised,) = [a for a in records(receiver, "LINE_SILENT") if a["state"] == "raised"]
    assert raised["detail"]["side"] == "bus"


def test_relay_wired_to_a_dart_station_is_rewired_until_sinopec_is_back(
    tmp_path: Path, broker: Mosquitto
) -> None:
    """Configured Sinopec, the relay first carries a DART POS and pump: another
    protocol's bytes, LINE_REWIRED (protocol). The right station is put back
    on the same links: cleared."""
    pump_link, pos_link = tmp_path / "pump", tmp_path / "pos"
    receiver = stack.receiver(tmp_path, broker.port, DEMO_KEYS, client_id=f"rx-{tmp_path.name}")
    sim = stack.dispenser(tmp_path, pump_link, orders=0, nozzles=1, protocol="dart", name="dart")
    pos = stack.pos(tmp_path, pos_link, addresses="1", protocol="dart")
    collector = stack.collector(
        tmp_path,
        DEMO_CONFIG,
        overrides(tmp_path, broker, mode="relay", device=str(pump_link), pos_device=str(pos_link)),
    )
    try:
        wait_alarms(receiver, [("LINE_REWIRED", "raised")], "a DART station on a Sinopec port")
        pos.stop()
        sim.stop()
        sim = stack.dispenser(tmp_path, pump_link, orders=3, nozzles=1, rate=2, name="sinopec")
        pos = stack.pos(tmp_path, pos_link, addresses="1")
        stack.wait_until(
            lambda: ("LINE_REWIRED", "cleared") in line_alarms(receiver), 60, "rewired cleared"
        )
        receiver.wait_lines(lambda line: line.get("type") == "order", 3, 60)
    finally:
        for proc in (pos, sim, collector, receiver):
            proc.stop()
    (raised,) = [a for a in records(receiver, "LINE_REWIRED") if a["state"] == "raised"]
    assert raised["source"] == "p01" and raised["detail"]["reason"] == "protocol"
    assert raised["detail"]["expected"] == {"protocol": "sinopec", "addresses": [1]}
    assert raised["detail"]["seen"]["good_frames"] == 0


def test_tap_on_a_bus_of_another_pump_address_is_rewired(tmp_path: Path, broker: Mosquitto) -> None:
    """Configured for pump 1, the tap's bus carries pump 7 only: LINE_REWIRED
    (address) naming 7."""
    pump_link, pos_link, tap_link = tmp_path / "pump", tmp_path / "pos", tmp_path / "tap"
    receiver = stack.receiver(tmp_path, broker.port, DEMO_KEYS, client_id=f"rx-{tmp_path.name}")
    sim = stack.dispenser(tmp_path, pump_link, orders=0, nozzles=1, extra=["--address", "7"])
    pos = stack.pos(tmp_path, pos_link, addresses="7")
    bus = stack.bus(tmp_path, pos=pos_link, pump=pump_link, tap=tap_link)
    collector = stack.collector(
        tmp_path, DEMO_CONFIG, overrides(tmp_path, broker, mode="listen", device=str(tap_link))
    )
    try:
        wait_alarms(receiver, [("LINE_REWIRED", "raised")], "pump 7 on a port for pump 1")
    finally:
        for proc in (collector, pos, bus, sim, receiver):
            proc.stop()
    (raised,) = records(receiver, "LINE_REWIRED")
    assert raised["detail"]["reason"] == "address"
    assert raised["detail"]["seen"]["addresses"] == [7]
    assert raised["detail"]["expected"]["addresses"] == [1]


def test_poll_port_cut_is_line_silent_and_a_foreign_pump_only_silence(
    tmp_path: Path, broker: Mosquitto
) -> None:
    """Poll port: the line cut for 5 s (``line-cut``) is LINE_SILENT beside the
    pump's NOZZLE_OFFLINE, cleared when answers return. Then the Sinopec pump
    is replaced by a DART pump on the same link: it never answers a Sinopec
    poll, so the port says LINE_SILENT again, not LINE_REWIRED — the
    collector writes nothing but its own read-only polls (D20)."""
    link = tmp_path / "pump1"
    receiver = stack.receiver(tmp_path, broker.port, DEMO_KEYS, client_id=f"rx-{tmp_path.name}")
    sim = stack.dispenser(
        tmp_path, link, orders=0, nozzles=1, extra=["--fault", "at=3:line-cut=5"], name="sinopec"
    )
    collector = stack.collector(
        tmp_path, DEMO_CONFIG, overrides(tmp_path, broker, device=str(link))
    )
    try:
        wait_alarms(receiver, [("LINE_SILENT", "raised"), ("LINE_SILENT", "cleared")], "cut")
        sim.stop()
        sim = stack.dispenser(tmp_path, link, orders=0, nozzles=1, protocol="dart", name="dart")
        want = [("LINE_SILENT", "raised"), ("LINE_SILENT", "cleared"), ("LINE_SILENT", "raised")]
        wait_alarms(receiver, want, "a DART pump on a Sinopec poll port")
    finally:
        for proc in (collector, sim, receiver):
            proc.stop()
    codes = {(a["record"]["code"], a["record"]["state"]) for a in receiver.snapshot()
             if a.get("type") == "alarm"}  # fmt: skip
    assert ("NOZZLE_OFFLINE", "raised") in codes and ("NOZZLE_OFFLINE", "cleared") in codes
    assert records(receiver, "LINE_REWIRED") == []


def test_noisy_poll_lines_of_each_protocol_raise_nothing(tmp_path: Path, broker: Mosquitto) -> None:
    """Sinopec, DART and Gilbarco poll ports, each simulator hitting ~1 % of
    its bytes (``--bit-error-rate 1e-3``), checked over 3 s windows while
    sales flow: no LINE_REWIRED, no LINE_SILENT."""
    from hil import station

    receiver = stack.receiver(tmp_path, broker.port, DEMO_KEYS, client_id=f"rx-{tmp_path.name}")
    sims = station.start_dispensers(
        tmp_path, 3, orders=6, rate=1, nozzles=2, common=["--bit-error-rate", "1e-3"]
    )
    config = station.write_config(tmp_path / "station.toml", tmp_path, broker.port, 3)
    checks = [
        f"ports.{i}.line_{k}" for i in range(3) for k in ("rewired_after_s=3", "silent_after_s=2")
    ]
    collector = stack.collector(tmp_path, config, checks)
    try:
        receiver.wait_lines(lambda line: line.get("type") == "order", 18, 90)
    finally:
        collector.stop()
        for sim in sims.values():
            sim.stop()
        receiver.stop()
    noisy = {
        json.loads(raw)["port"]
        for raw in collector.log_path.read_text().splitlines()
        if '"protocol_error"' in raw
    }
    assert noisy == {1, 2, 3}, "the noise was real on every line"
    assert line_alarms(receiver) == []


def test_alarms_restored_after_a_restart_clear_and_are_not_raised_twice() -> None:
    line = Line(watch(silent=True, rewired=True))
    assert line.tick(20) == [], "still silent: no second raise"
    # A quiet window holds no foreign bytes: the right frames end both.
    assert line.tick(1, rx=100, good=10) == [("LINE_SILENT", False), ("LINE_REWIRED", False)]
    line = Line(watch(rewired=True))
    assert line.tick(12, rx=200, bad=10) == [], "still another protocol: no second raise"
    assert line.tick(12, rx=200, good=30) == [("LINE_REWIRED", False)]
