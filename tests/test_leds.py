"""Run and network LEDs (SPEC D12) against a temporary sysfs-like tree."""

from __future__ import annotations

import asyncio
from pathlib import Path

from collector.device.leds import (
    CONNECTED,
    FAULT,
    NO_PLATFORM,
    RUNNING,
    Health,
    LedTask,
    SysfsLed,
    level_at,
    patterns,
)


def test_patterns_follow_health() -> None:
    assert patterns(Health(True, True, True)) == (RUNNING, CONNECTED)
    assert patterns(Health(False, True, False)) == (FAULT, NO_PLATFORM)
    assert patterns(Health(True, False, True))[0] == FAULT


def test_levels_over_time() -> None:
    assert [level_at(RUNNING, t) for t in (0.0, 0.5, 1.0, 1.5, 2.0)] == [
        True, True, False, False, True,
    ]  # fmt: skip
    assert all(level_at(CONNECTED, t) for t in (0.0, 3.3, 100.0))
    assert [level_at(FAULT, t) for t in (0.05, 0.15)] == [True, False]


def leds(tmp_path: Path) -> tuple[Path, Path]:
    run, net = tmp_path / "run", tmp_path / "net"
    for d in (run, net):
        d.mkdir()
        (d / "brightness").write_text("0")
    return run, net


def test_task_writes_levels_only_on_change_and_goes_dark_when_stopped(tmp_path: Path) -> None:
    run_dir, net_dir = leds(tmp_path)
    now = [0.0]
    health = [Health(True, True, False)]
    task = LedTask(SysfsLed(run_dir), SysfsLed(net_dir), lambda: health[0], lambda: now[0])
    task.show()
    assert (run_dir / "brightness").read_text() == "1"  # running: on for the first second
    assert (net_dir / "brightness").read_text() == "1"  # no platform: blinking, on phase
    (net_dir / "brightness").write_text("untouched")
    now[0] = 0.2
    task.show()
    assert (net_dir / "brightness").read_text() == "untouched", "no write without a change"
    now[0] = 0.7  # no platform: off phase
    task.show()
    assert (net_dir / "brightness").read_text() == "0"
    health[0] = Health(True, True, True)  # the platform is reached: steady on
    task.show()
    assert (net_dir / "brightness").read_text() == "1"
    now[0] = 1.2
    task.show()
    assert (run_dir / "brightness").read_text() == "0"

    async def run_briefly() -> None:
        job = asyncio.create_task(task.run())
        await asyncio.sleep(0.05)
        job.cancel()

    asyncio.run(run_briefly())
    assert (run_dir / "brightness").read_text() == "0"
    assert (net_dir / "brightness").read_text() == "0"


def test_a_missing_led_never_stops_anything(tmp_path: Path) -> None:
    led = SysfsLed(tmp_path / "gone")
    led.set(True)  # logged, not raised
    assert not (tmp_path / "gone").exists()


def test_the_daemon_drives_both_leds(tmp_path: Path) -> None:
    """The real collector, no broker: run LED blinks slowly, network LED shows
    "no platform"; stopped, both are dark."""
    import time

    from hil import stack

    run_dir, net_dir = leds(tmp_path)
    link = tmp_path / "pump1"
    sim = stack.dispenser(tmp_path, link, orders=0, nozzles=1)
    collector = stack.collector(
        tmp_path,
        stack.ROOT / "config" / "demo.toml",
        [
            f"store.path={tmp_path}/s.sqlite",
            f"ports.0.device={link}",
            f"uplink.port={stack.free_port()}",
            f"leds.run={run_dir}",
            f"leds.network={net_dir}",
        ],
    )
    try:
        seen: dict[str, set[str]] = {"run": set(), "net": set()}
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not all(len(v) == 2 for v in seen.values()):
            seen["run"].add((run_dir / "brightness").read_text())
            seen["net"].add((net_dir / "brightness").read_text())
            time.sleep(0.05)
        assert seen == {"run": {"0", "1"}, "net": {"0", "1"}}, seen
        assert collector.stop() == 0
        assert (run_dir / "brightness").read_text() == "0"
        assert (net_dir / "brightness").read_text() == "0"
    finally:
        collector.stop()
        sim.stop()
