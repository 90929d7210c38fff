"""Shared fixtures: a real mosquitto broker on a free loopback port."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from hil.stack import ROOT, Mosquitto

# No per-example deadline: properties are about outcomes, never time (timing
# goals live in bench/). Hypothesis' default 200 ms deadline turns a loaded CI
# machine (two xdist workers, pure-Python SM2 in some properties) into flaky
# DeadlineExceeded failures that say nothing about the code.
settings.register_profile("forecourt", deadline=None)
settings.load_profile("forecourt")


#: Test files whose tests run longest (fuzz of 35 000 examples, end-to-end runs
#: of a minute), first in the order. `make test` runs three workers with
#: `--dist worksteal`: each takes a slice of the list in order, and a worker
#: out of tests takes from the tail of another's; so the
#: long ones start at once and the run ends on short tests, where a 60 s test
#: drawn last would run alone at the end. Order only; every test still runs.
#: Slowest first, from `pytest --durations`.
SLOW_FIRST = (
    "test_dart_driver.py",
    "test_sinopec_fuzz.py",
    "test_gilbarco_fuzz.py",
    "test_tls_parser.py",
    "test_torture_kill.py",
    "test_edge_faults.py",
    "test_ota_upgrade.py",
    "test_ports_32.py",
    "test_line_checks.py",
    "test_detect_sims.py",
    "test_nozzle_uid.py",
    "test_end_to_end_protocols.py",
    "test_end_to_end_config.py",
    "test_torture_broker.py",
    "test_config_property.py",
    "test_failover_netns.py",
    "test_uplink_order.py",
    "test_end_to_end_http.py",
    "test_end_to_end_store_full.py",
    "test_end_to_end_gauge.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: n for n, name in enumerate(SLOW_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


def pytest_configure(config: pytest.Config) -> None:
    # git checks files out 0644, and the collector refuses a key file that
    # group or others can read (D9); `make deps` does the same chmod.
    (ROOT / "config" / "demo-keys.toml").chmod(0o600)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    mosquitto = Mosquitto(tmp_path / "broker")
    mosquitto.start()
    try:
        yield mosquitto
    finally:
        mosquitto.stop()
