"""What ``config check`` accepts, ``run`` can use (a property, hil/config_mutations.py).

A known-good station config using every table gets one value changed, drawn
from the schema itself: bounds and just past them, zero, 10^30, other types,
paths to the config file, another program's database, a directory, /dev/null.
Each config the check accepts is started for real — ``forecourt run`` against
the test's ptys and broker — to READY=1, its control socket answers, and it
stops with 0; each one the check refuses has only ``key.path: reason`` lines,
one of them naming the changed key's table. A few dozen examples here (each
accepted one a real start, ≈ 2 s); bench/config_fuzz.py runs more.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from hil import config_mutations as cm
from hil.stack import Mosquitto

#: Examples in ``make test``: about half are accepted, each a real start.
EXAMPLES = 30

_Mutation = tuple[tuple[str | int, ...], Any]


@pytest.fixture(scope="module")
def station(tmp_path_factory: pytest.TempPathFactory) -> Iterator[cm.Station]:
    work = tmp_path_factory.mktemp("fuzz")
    broker = Mosquitto(work / "broker")
    broker.start()
    pairs = [os.openpty() for _ in range(2)]
    ptys = (os.ttyname(pairs[0][1]), os.ttyname(pairs[1][1]))
    try:
        yield cm.make_station(work, ptys, broker.port)
    finally:
        for master, slave in pairs:
            os.close(master)
            os.close(slave)
        broker.stop()


_examples = itertools.count()


def test_the_known_good_config_starts(station: cm.Station) -> None:
    example = station.work / "known-good"
    assert cm.judge(station, example, ("log", "level"), "info") == (True, None)


@st.composite
def mutations(draw: st.DrawFn, station: cm.Station) -> _Mutation:
    site = draw(st.sampled_from(cm.sites(cm.good_config(station, station.work / "template"))))
    return site.path, draw(cm.values(site, station.strings))


def test_every_config_check_accepts_starts_and_every_refusal_names_its_key(
    station: cm.Station,
) -> None:
    verdicts: list[bool] = []

    @settings(
        max_examples=EXAMPLES,
        derandomize=True,  # the same examples in every run of make test
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(mutations(station))
    # A key TOML must quote (here empty) is named quoted, as TOML writes it.
    @example((("ports", 1, "dart", "grades"), {"": 1.0}))
    def check(mutation: _Mutation) -> None:
        path, value = mutation
        example = station.work / f"ex{next(_examples)}"
        accepted, problem = cm.judge(station, example, path, value)
        verdicts.append(accepted)
        assert problem is None, f"{'.'.join(map(str, path))} = {value!r}: {problem}"

    check()
    assert any(verdicts) and not all(verdicts), "both outcomes are exercised"
