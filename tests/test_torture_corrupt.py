"""A corrupt store of ours at start (SPEC D6): the collector moves it aside,
tells the platform (STORE_CORRUPT alarm) and collects into a fresh store. (A
file that is not one of our stores is refused and left alone:
tests/test_store_identity.py, tests/test_config_bounds.py.)"""

from __future__ import annotations

from pathlib import Path

from hil.torture import Station
from tests.store_edit import damage_pages


def test_corrupt_store_at_start_is_moved_aside_alarmed_and_collection_runs(
    tmp_path: Path,
) -> None:
    station = Station(tmp_path, pumps=1, orders_per_pump=6, rate=2.0, seed=31)
    try:
        damaged = damage_pages(station.store)  # its header still says it is ours
        station.start_collector()
        [alarm] = station.receiver.wait_lines(
            lambda line: (
                line.get("type") == "alarm" and line["record"].get("code") == "STORE_CORRUPT"
            ),
            1,
            60,
        )
        moved = Path(alarm["record"]["detail"]["moved_to"])
        assert moved.read_bytes() == damaged and moved.parent == station.store.parent
        assert station.judge(timeout=60).problems == []
    finally:
        station.stop()
