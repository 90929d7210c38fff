"""A corrupt store file at start (issue #6, SPEC D6): the collector moves it
aside, tells the platform (STORE_CORRUPT alarm) and collects into a fresh store."""

from __future__ import annotations

from pathlib import Path

from hil.torture import Station


def test_corrupt_store_at_start_is_moved_aside_alarmed_and_collection_runs(
    tmp_path: Path,
) -> None:
    station = Station(tmp_path, pumps=1, orders_per_pump=6, rate=2.0, seed=31)
    try:
        junk = b"\x00garbage, not SQLite\xff" * 512
        station.store.write_bytes(junk)
        station.start_collector()
        [alarm] = station.receiver.wait_lines(
            lambda line: (
                line.get("type") == "alarm" and line["record"].get("code") == "STORE_CORRUPT"
            ),
            1,
            60,
        )
        moved = Path(alarm["record"]["detail"]["moved_to"])
        assert moved.read_bytes() == junk and moved.parent == station.store.parent
        assert station.judge(timeout=60).problems == []
    finally:
        station.stop()
