"""collector/retry.py: the pauses of every local retry (ports, gauge, download, revert),
and the pace of a task that looks again every tick."""

from __future__ import annotations

import asyncio
import itertools
import random

import pytest

from collector.retry import Retry, every


def test_pauses_double_to_the_cap_within_half_to_whole_steps() -> None:
    retry = Retry(1.0, 8.0, random.Random(7))
    steps = [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    pauses = [retry.next_delay() for _ in steps]
    assert all(step / 2 <= pause <= step for pause, step in zip(pauses, steps, strict=True))
    retry.reset()
    assert 0.5 <= retry.next_delay() <= 1.0, "after a reset: the minimum's step again"


def test_many_retries_spread_out_and_never_exceed_the_cap() -> None:
    rng = random.Random(1)
    firsts = [Retry(2.0, 60.0, rng).next_delay() for _ in range(1000)]
    assert min(firsts) >= 1.0 and max(firsts) <= 2.0
    assert max(firsts) - min(firsts) > 0.9, "32 ports failing together do not retry together"
    retry = Retry(2.0, 60.0, rng)
    assert max(retry.next_delay() for _ in range(100)) <= 60.0


@pytest.mark.parametrize("bounds", [(0.0, 1.0), (2.0, 1.0), (-1.0, 5.0)])
def test_bounds_that_would_spin_or_invert_are_refused(bounds: tuple[float, float]) -> None:
    with pytest.raises(ValueError, match="minimum"):
        Retry(*bounds)


class _Enough(Exception):
    pass


def test_every_steps_at_once_then_again_after_each_period_until_stopped() -> None:
    stamps: list[float] = []

    def step() -> None:
        stamps.append(asyncio.get_running_loop().time())
        if len(stamps) == 3:
            raise _Enough

    with pytest.raises(_Enough):
        asyncio.run(every(0.01, step))
    assert len(stamps) == 3
    assert all(later - earlier >= 0.009 for earlier, later in itertools.pairwise(stamps))
