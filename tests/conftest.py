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
