"""Smart lead seals (SPEC F3): the state machine, the reader on a fake sysfs
tree, and the real daemon raising and clearing SEAL_OPENED / SEAL_OFFLINE at
the platform's receiver."""

from __future__ import annotations

import os
from datetime import timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from buffer.store import OrderStore
from collector.station.seals import (
    DEBOUNCE_READS,
    Reading,
    SealSpec,
    SealState,
    SealTask,
    SealWatch,
    read_seal,
)
from collector.tools.techcli import ask
from hil import stack
from hil.stack import Mosquitto

INTACT, OPENED, OFFLINE = (Reading(s) for s in SealState)
CST = timezone(timedelta(hours=8))


def spec(name: str = "meter", dispenser: str = "p01.a1", value: Path = Path("/x")) -> SealSpec:
    return SealSpec(name, dispenser, value, intact_level=1, period_s=0.5)


def never_raised(source: str, code: str) -> bool:
    return False


def feed(watch: SealWatch, name: str, reading: Reading, times: int) -> list[Any]:
    out = []
    for _ in range(times):
        out += watch.feed(name, reading)
    return out


def codes(transitions: list[Any]) -> list[tuple[str, str, bool]]:
    return [(code, source, raised) for code, source, raised, _ in transitions]


def test_a_state_changes_only_after_consistent_reads() -> None:
    watch = SealWatch([spec()], never_raised)
    assert feed(watch, "meter", INTACT, DEBOUNCE_READS) == []
    # A contact that bounces for fewer reads than the debounce is no alarm.
    assert feed(watch, "meter", OPENED, DEBOUNCE_READS - 1) == []
    assert feed(watch, "meter", INTACT, 1) == []
    assert watch.states()["meter"]["state"] == "intact"
    opened = feed(watch, "meter", OPENED, DEBOUNCE_READS)
    assert codes(opened) == [("SEAL_OPENED", "p01.a1", True)]
    assert opened[0][3]["seal"] == "meter" and opened[0][3]["seals"] == ["meter"]
    assert feed(watch, "meter", OPENED, 10) == [], "raised once per episode"
    assert codes(feed(watch, "meter", INTACT, DEBOUNCE_READS)) == [("SEAL_OPENED", "p01.a1", False)]


def test_offline_never_clears_an_opening() -> None:
    """Pulling the input of an opened seal must not end its SEAL_OPENED."""
    watch = SealWatch([spec()], never_raised)
    feed(watch, "meter", INTACT, DEBOUNCE_READS)
    feed(watch, "meter", OPENED, DEBOUNCE_READS)
    assert codes(feed(watch, "meter", OFFLINE, DEBOUNCE_READS)) == [
        ("SEAL_OFFLINE", "p01.a1", True)
    ]
    # Back, still opened: only the offline clears.
    assert codes(feed(watch, "meter", OPENED, DEBOUNCE_READS)) == [
        ("SEAL_OFFLINE", "p01.a1", False)
    ]
    feed(watch, "meter", OFFLINE, DEBOUNCE_READS)
    # Back intact: both end.
    assert sorted(codes(feed(watch, "meter", INTACT, DEBOUNCE_READS))) == [
        ("SEAL_OFFLINE", "p01.a1", False),
        ("SEAL_OPENED", "p01.a1", False),
    ]


def test_two_seals_of_one_dispenser_share_one_episode() -> None:
    watch = SealWatch([spec("meter"), spec("board")], never_raised)
    feed(watch, "meter", INTACT, DEBOUNCE_READS)
    feed(watch, "board", INTACT, DEBOUNCE_READS)
    assert codes(feed(watch, "meter", OPENED, DEBOUNCE_READS)) == [("SEAL_OPENED", "p01.a1", True)]
    assert feed(watch, "board", OPENED, DEBOUNCE_READS) == []
    assert feed(watch, "meter", INTACT, DEBOUNCE_READS) == [], "the board's seal is still open"
    cleared = feed(watch, "board", INTACT, DEBOUNCE_READS)
    assert codes(cleared) == [("SEAL_OPENED", "p01.a1", False)]


def test_a_restored_alarm_is_not_raised_twice_and_clears_once_all_are_read() -> None:
    """After a restart the store says SEAL_OPENED is raised for p01.a1."""

    def stored(source: str, code: str) -> bool:
        return (source, code) == ("p01.a1", "SEAL_OPENED")

    watch = SealWatch([spec("meter"), spec("board")], stored)
    assert feed(watch, "meter", OPENED, DEBOUNCE_READS) == []
    watch = SealWatch([spec("meter"), spec("board")], stored)
    assert feed(watch, "meter", INTACT, DEBOUNCE_READS) == [], "the board was not read yet"
    assert codes(feed(watch, "board", INTACT, DEBOUNCE_READS)) == [("SEAL_OPENED", "p01.a1", False)]


def test_first_reads_raise_what_they_find() -> None:
    watch = SealWatch([spec("a", "p01.a1"), spec("b", "p02.a1")], never_raised)
    assert codes(feed(watch, "a", OPENED, DEBOUNCE_READS)) == [("SEAL_OPENED", "p01.a1", True)]
    assert codes(feed(watch, "b", OFFLINE, DEBOUNCE_READS)) == [("SEAL_OFFLINE", "p02.a1", True)]


def test_reader_on_a_fake_sysfs_tree(tmp_path: Path) -> None:
    value = tmp_path / "gpio17" / "value"
    value.parent.mkdir()
    s = spec(value=value)
    assert read_seal(s) == Reading(SealState.OFFLINE, "value file missing")
    value.write_text("1\n")
    assert read_seal(s).state == SealState.INTACT
    value.write_text("0\n")
    assert read_seal(s).state == SealState.OPENED
    low = SealSpec("low", "p01.a1", value, intact_level=0, period_s=0.5)
    assert read_seal(low).state == SealState.INTACT, "active-low input"
    value.write_text("bogus")
    assert read_seal(s) == Reading(SealState.OFFLINE, "invalid value b'bogus'")
    value.write_text("")
    assert read_seal(s).state == SealState.OFFLINE
    if os.geteuid() != 0:  # root reads a mode-000 file anyway
        value.write_text("1")
        value.chmod(0)
        assert read_seal(s).state == SealState.OFFLINE
        value.chmod(0o644)
    value.unlink()
    value.parent.rmdir()
    value.parent.write_text("")  # a file where the directory was: ENOTDIR
    assert read_seal(s).state == SealState.OFFLINE


def committed(store: OrderStore) -> list[dict[str, Any]]:
    """The alarms the store holds once its writer committed what it was handed."""
    store.writer.flush()
    return list(store.records("alarm"))


def test_task_stores_alarms_and_restores_them_after_a_restart(tmp_path: Path) -> None:
    value = tmp_path / "value"
    value.write_text("0")
    store = OrderStore(tmp_path / "s.sqlite")
    woken = []
    try:
        task = SealTask([spec(value=value)], store, CST, lambda: woken.append(1))
        for _ in range(DEBOUNCE_READS + 2):
            task.poll(task.specs[0])
        assert woken == [], "woken once committed, not before"
        (raised,) = committed(store)
        assert (raised["code"], raised["state"], raised["source"]) == (
            "SEAL_OPENED",
            "raised",
            "p01.a1",
        )
        assert woken == [1]
        # A restart: the new task reads "raised" from the store; no second raise.
        task = SealTask([spec(value=value)], store, CST, lambda: None)
        for _ in range(DEBOUNCE_READS + 2):
            task.poll(task.specs[0])
        assert len(committed(store)) == 1
        value.write_text("1")
        for _ in range(DEBOUNCE_READS):
            task.poll(task.specs[0])
        states = [(a["code"], a["state"]) for a in committed(store)]
        assert states == [("SEAL_OPENED", "raised"), ("SEAL_OPENED", "cleared")]
    finally:
        store.close()


def test_an_opening_the_store_refused_stays_queued_and_is_stored_in_order(
    tmp_path: Path,
) -> None:
    """A SEAL_OPENED the store cannot commit now (a technician's sqlite3 shell
    holding the write lock) stays with the writer, in order, and is stored as
    soon as the store answers again, after the STORE_FAULT that says so."""
    import sqlite3

    value = tmp_path / "value"
    value.write_text("0")
    store = OrderStore(tmp_path / "s.sqlite")
    shell = sqlite3.connect(tmp_path / "s.sqlite")
    try:
        task = SealTask([spec(value=value)], store, CST, lambda: None)
        shell.execute("BEGIN IMMEDIATE")
        for _ in range(DEBOUNCE_READS + 1):
            task.poll(task.specs[0])
        assert not store.writer.flush() and store.writer.faulty
        shell.rollback()
        got = [(a["code"], a["state"]) for a in committed(store)]
        assert got == [
            ("STORE_FAULT", "raised"), ("STORE_FAULT", "cleared"), ("SEAL_OPENED", "raised")
        ]  # fmt: skip
        assert task.store_errors == 0
    finally:
        shell.close()
        store.close()


def test_an_opening_the_writer_could_not_take_is_asked_for_at_a_later_read(
    tmp_path: Path,
) -> None:
    """The writer's queue full (a long store fault): the transition is not
    taken, the seal's alarm state stays, and a later read asks again."""
    value = tmp_path / "value"
    value.write_text("0")
    store = OrderStore(tmp_path / "s.sqlite")
    try:
        task = SealTask([spec(value=value)], store, CST, lambda: None)
        store.writer.max_queued = 0
        for _ in range(DEBOUNCE_READS + 1):
            task.poll(task.specs[0])
        assert task.store_errors >= 1 and committed(store) == []
        store.writer.max_queued = 10
        task.poll(task.specs[0])
        states = [(a["code"], a["state"]) for a in committed(store)]
        assert states == [("SEAL_OPENED", "raised")]
    finally:
        store.close()


def test_config_rejects_a_seal_on_an_unknown_pump() -> None:
    from config.loader import ConfigError, load_config

    seals = (
        'seals=[{name="m", dispenser="p01.a1", value="/v"},'
        ' {name="m", dispenser="p01.a7", value="/w"}]'
    )
    with pytest.raises(ConfigError) as err:
        load_config(stack.ROOT / "config" / "demo.toml", [seals])
    text = str(err.value)
    assert "seals.1.name" in text and "seals.1.dispenser" in text, text


DEMO_CONFIG = stack.ROOT / "config" / "demo.toml"
DEMO_KEYS = stack.ROOT / "config" / "demo-keys.toml"


def test_daemon_alarms_seals_opened_closed_and_removed(tmp_path: Path, broker: Mosquitto) -> None:
    """The real collector on a fake sysfs tree: a seal cut, restored, its input
    removed and back; each transition reaches the receiver once (SPEC F3)."""
    gpio = tmp_path / "sys" / "class" / "gpio"
    meter, board = gpio / "gpio17" / "value", gpio / "gpio18" / "value"
    for value in (meter, board):
        value.parent.mkdir(parents=True)
        value.write_text("1\n")
    link = tmp_path / "pump1"
    receiver = stack.receiver(tmp_path, broker.port, DEMO_KEYS, client_id=f"rx-{tmp_path.name}")
    sim = stack.dispenser(tmp_path, link, orders=0, nozzles=1)
    seals = (
        f'seals=[{{name="meter", dispenser="p01.a1", value="{meter}", poll_ms=100}},'
        f' {{name="board", dispenser="p01.a1", value="{board}", poll_ms=100, intact_level=1}}]'
    )
    collector = stack.collector(
        tmp_path,
        DEMO_CONFIG,
        [
            f"store.path={tmp_path}/s.sqlite",
            f"ports.0.device={link}",
            f"uplink.port={broker.port}",
            "uplink.reconnect_min_s=0.2",
            "log.format=json",
            seals,
        ],
    )

    def alarms() -> list[dict[str, Any]]:
        return [
            x["record"]
            for x in receiver.snapshot()
            if x.get("type") == "alarm" and x["record"]["code"].startswith("SEAL_")
        ]

    def wait_for(count: int, what: str) -> None:
        stack.wait_until(lambda: len(alarms()) >= count, 30, what)

    try:
        stack.wait_until(
            lambda: '"started"' in collector.log_path.read_text(), 30, "the collector started"
        )
        meter.write_text("0\n")  # the meter's seal is cut
        wait_for(1, "SEAL_OPENED raised")
        status = ask(str(tmp_path / "control.sock"), {"query": "status"})["data"]
        assert status["seals"] == {
            "board": {"dispenser": "p01.a1", "state": "intact"},
            "meter": {"dispenser": "p01.a1", "state": "opened"},
        }
        meter.write_text("1\n")
        wait_for(2, "SEAL_OPENED cleared")
        board.unlink()  # the board seal's input disappears
        wait_for(3, "SEAL_OFFLINE raised")
        board.write_text("1\n")
        wait_for(4, "SEAL_OFFLINE cleared")
    finally:
        collector.stop()
        sim.stop()
        receiver.stop()
    got = [(a["code"], a["state"], a["source"], a["detail"]["seal"]) for a in alarms()]
    assert got == [
        ("SEAL_OPENED", "raised", "p01.a1", "meter"),
        ("SEAL_OPENED", "cleared", "p01.a1", "meter"),
        ("SEAL_OFFLINE", "raised", "p01.a1", "board"),
        ("SEAL_OFFLINE", "cleared", "p01.a1", "board"),
    ]
    assert alarms()[2]["detail"]["reason"] == "value file missing"


def test_an_opening_across_a_restart_is_raised_once_and_cleared_once(tmp_path: Path) -> None:
    """The real daemon, no broker (the store is what we read): a seal opened,
    the collector stopped and started again with the seal still open, then
    the seal closed: one SEAL_OPENED raised, one cleared (SPEC F3)."""
    value = tmp_path / "gpio17" / "value"
    value.parent.mkdir()
    value.write_text("0\n")
    link = tmp_path / "pump1"
    sim = stack.dispenser(tmp_path, link, orders=0, nozzles=1)
    args = [
        f"store.path={tmp_path}/s.sqlite",
        f"ports.0.device={link}",
        f"uplink.port={stack.free_port()}",
        "log.format=json",
        f'seals=[{{name="meter", dispenser="p01.a1", value="{value}", poll_ms=100}}]',
    ]

    def seal_states(collector: stack.Proc) -> int:
        return collector.log_path.read_text().count('"seal_state"')

    running: list[stack.Proc] = []
    try:
        first = stack.collector(tmp_path, DEMO_CONFIG, args, name="first")
        running.append(first)
        stack.wait_until(lambda: '"SEAL_OPENED"' in first.log_path.read_text(), 30, "raised")
        assert running.pop().stop() == 0
        second = stack.collector(tmp_path, DEMO_CONFIG, args, name="second")
        running.append(second)
        # Its first debounced read ("opened") is logged: the raise would come with it.
        stack.wait_until(lambda: seal_states(second) >= 1, 30, "the seal read after the restart")
        value.write_text("1\n")
        stack.wait_until(lambda: seal_states(second) >= 2, 30, "the seal read intact")
        assert running.pop().stop() == 0
    finally:
        for collector in running:  # a failed wait leaves none running behind
            collector.stop()
        sim.stop()
    store = OrderStore(tmp_path / "s.sqlite")
    try:
        got = [(a["code"], a["state"]) for a in store.records("alarm") if "SEAL" in a["code"]]
    finally:
        store.close()
    assert got == [("SEAL_OPENED", "raised"), ("SEAL_OPENED", "cleared")]
