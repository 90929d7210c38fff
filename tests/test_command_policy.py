"""The command channel's policy (uplink/command_policy.py), the broker's
silence (uplink/transport.py AckClock) and the failover changes they need,
on their own: no sockets, times passed in. The wiring with real brokers is
tests/test_command_channel.py; with a real cluster, tests_cluster/."""

from __future__ import annotations

import math
import random

import pytest

from uplink.command_policy import (
    COMMAND_CHANNEL_DOWN,
    OFF,
    REFUSED,
    SUBSCRIBED,
    SUBSCRIBING,
    WAITING,
    CommandPolicy,
)
from uplink.failover import UPLINK_FAILOVER, Endpoint, FailoverPolicy
from uplink.transport import AckClock

NAMES = ("rabbit1", "rabbit2", "rabbit3")


def policy(
    refusals: int = 2, alarm_s: float = 30.0, names: tuple[str, ...] = NAMES
) -> CommandPolicy:
    p = CommandPolicy(
        names,
        enabled=True,
        refusals_per_endpoint=refusals,
        retry_min_s=1.0,
        retry_max_s=8.0,
        alarm_after_s=alarm_s,
        now=0.0,
        now_ms=1_000,
        rng=random.Random(5),
    )
    return p


def test_off_means_nothing_is_subscribed_or_alarmed() -> None:
    p = policy()
    p.enable(False)
    assert p.state == OFF and p.reason is None
    assert p.connected(1.0, 1_001, 0) == math.inf
    assert p.alarm_in(100.0) == math.inf and p.check_alarm(1e6, 1) == []


def test_the_first_subscribe_goes_at_connect_and_success_ends_the_round() -> None:
    p = policy()
    assert p.state == WAITING and p.reason == "not connected yet"
    assert p.connected(1.0, 1_100, 0) == 0.0
    p.subscribing(1_100)
    assert p.state == SUBSCRIBING
    assert p.subscribed_now(1.1, 1_200) == []
    assert p.state == SUBSCRIBED and p.reason is None and p.since_ms == 1_200


def test_a_refusal_waits_its_backoff_which_outlives_the_connection() -> None:
    """A broker that closes the connection on a refused SUBSCRIBE (RabbitMQ)
    must not get a SUBSCRIBE at every reconnect."""
    p = policy(refusals=5)
    p.connected(0.0, 0, 0)
    assert p.refused(1.0, 1_000, "closed") is None
    assert p.state == REFUSED and p.reason == "closed"
    delays = [p.attempt_in(1.0)]
    p.disconnected(1.0, 1_000)
    assert p.state == REFUSED, "the refusal, not 'not connected', says why"
    assert p.connected(1.2, 1_200, 0) == pytest.approx(delays[0] - 0.2)
    for t in (10.0, 30.0, 60.0):
        p.refused(t, int(t * 1000), "closed")
        delays.append(p.attempt_in(t))
    assert all(0.5 <= d <= 8.5 for d in delays), "min/2 + U(0, cap), cap 1 s doubling to 8 s"
    assert max(delays[2:]) > 1.5, "the cap grew"


def test_refusals_on_one_endpoint_move_to_the_next_not_yet_refused() -> None:
    p = policy(refusals=2)
    p.connected(0.0, 0, 1)  # on rabbit2 (rabbit1 died)
    assert p.refused(1.0, 1_000, "x") is None
    move = p.refused(2.0, 2_000, "x")
    assert move is not None and move.index == 2 and "refused 2 times" in move.reason
    p.disconnected(2.0, 2_000)
    p.connected(3.0, 3_000, 2)
    p.refused(4.0, 4_000, "x")
    move = p.refused(5.0, 5_000, "x")
    assert move is not None and move.index == 0, "wraps round to rabbit1, not refused yet"
    p.connected(6.0, 6_000, 0)
    p.refused(7.0, 7_000, "x")
    assert p.refused(8.0, 8_000, "x") is None, "every endpoint refused: stay, retry at backoff"
    assert p.refused_round == {0, 1, 2}
    p.subscribed_now(20.0, 20_000)
    assert p.refused_round == set() and p.refusals == {}, "a success starts a new round"


def test_a_single_endpoint_never_moves() -> None:
    p = policy(refusals=1, names=("only",))
    p.connected(0.0, 0, 0)
    assert [p.refused(t, 0, "x") for t in (1.0, 2.0, 3.0)] == [None, None, None]


def test_the_alarm_counts_connected_time_only_and_clears_with_its_length() -> None:
    p = policy(refusals=100, alarm_s=30.0)
    assert p.alarm_in(500.0) == math.inf, "not connected: NETWORK_LOSS's business"
    p.connected(5.0, 5_000, 0)
    assert p.alarm_in(8.0) == math.inf, "connected, but the broker has answered nothing yet"
    p.alive(10.0)
    p.refused(11.0, 11_000, "SUBACK refused: 0x80")
    p.alive(12.0)
    assert p.alarm_in(30.0) == 10.0
    p.disconnected(30.0, 30_000)  # 20 s connected so far
    assert p.alarm_in(1000.0) == math.inf
    p.connected(1000.0, 1_000_000, 1)
    p.alive(1000.0)
    assert p.alarm_in(1000.0) == 10.0
    assert p.check_alarm(1005.0, 1_005_000) == []
    [raised] = p.check_alarm(1010.0, 1_010_000)
    assert raised.code == COMMAND_CHANNEL_DOWN and raised.raised
    assert raised.detail == {
        "down_s": 30,
        "reason": "SUBACK refused: 0x80",
        "endpoint": "rabbit2",
        "refused_by": ["rabbit1"],
    }
    assert p.check_alarm(2000.0, 2_000_000) == [], "raised once"
    [cleared] = p.subscribed_now(1020.0, 1_020_000)
    assert not cleared.raised and cleared.detail == {"down_s": 40, "endpoint": "rabbit2"}
    p.disconnected(1030.0, 1_030_000)
    p.connected(1040.0, 1_040_000, 1)
    p.alive(1040.0)
    assert p.alarm_in(1040.0) == 30.0, "counting starts over after the channel was up"


def test_since_moves_only_between_subscribed_and_not() -> None:
    p = policy(refusals=100)
    p.connected(0.0, 5_000, 0)
    p.refused(1.0, 6_000, "a")
    p.disconnected(2.0, 7_000)
    assert p.since_ms == 1_000, "down since the start, whatever the reasons on the way"
    p.connected(3.0, 8_000, 0)
    p.subscribed_now(3.0, 8_000)
    p.disconnected(4.0, 9_000, "not connected")
    assert (p.state, p.reason, p.since_ms) == (WAITING, "not connected", 9_000)


def test_a_raised_alarm_restored_from_the_store_is_cleared_and_a_refused_store_asks_again() -> None:
    p = policy()
    p.restore(alarm_raised=True)
    p.connected(0.0, 0, 0)
    [cleared] = p.subscribed_now(1.0, 1_000)
    p.undo(cleared)  # the store refused the clear
    assert p.alarm_raised
    p.disconnected(2.0, 2_000)
    p.connected(3.0, 3_000, 0)
    assert p.subscribed_now(4.0, 4_000)[0].raised is False


def test_a_raise_left_by_a_run_with_commands_on_is_cleared_once_they_are_off() -> None:
    p = policy()
    p.enable(False)
    assert p.off_clear() == []
    p.restore(alarm_raised=True)
    [cleared] = p.off_clear()
    assert cleared.code == COMMAND_CHANNEL_DOWN and not cleared.raised
    assert p.off_clear() == []


def test_the_broker_is_silent_only_while_a_request_waits_with_no_answer() -> None:
    clock = AckClock(timeout_s=10.0)
    assert clock.silent_for(100.0) == 0.0, "nothing waits: keepalive's business"
    clock.sent(100.0)
    clock.sent(101.0)
    assert clock.silent_for(108.0) == 8.0
    clock.answered(109.0, 1)  # a slow link answering batch after batch is not silent
    assert clock.silent_for(115.0) == 6.0 and clock.outstanding == 1
    clock.given_up()
    assert clock.outstanding == 0 and clock.silent_for(500.0) == 0.0
    clock.sent(600.0)
    assert clock.silent_for(611.0) == 11.0 >= clock.timeout_s


WIRED = Endpoint("rabbit1", "127.0.0.1", 1)
BACKUP = Endpoint("rabbit2", "127.0.0.1", 2)


def failover(attempts: int = 2) -> FailoverPolicy:
    return FailoverPolicy(
        (WIRED, BACKUP),
        attempts_per_endpoint=attempts,
        probe_every_s=10.0,
        network_loss_after_s=100.0,
        now=0.0,
        rng=random.Random(1),
    )


def test_an_endpoint_that_accepts_and_drops_at_once_is_left() -> None:
    f = failover(attempts=2)
    f.connected(1.0)
    assert f.lost(2.0, "closed") is False
    f.connected(3.0)
    assert f.lost(4.0, "closed") is True and f.target == BACKUP
    f.connected(5.0)
    assert f.lost(5.0 + 31.0, "closed") is False, "a healthy connection's loss counts afresh"


def test_a_move_for_commands_raises_the_failover_with_its_reason_and_no_failure() -> None:
    f = failover()
    f.connected(1.0)
    f.interrupted(2.0)
    assert f.target == WIRED, "a SUBSCRIBE the broker closed the connection over: same endpoint"
    f.connected(3.0)
    f.move_to(4.0, 1, "commands refused 3 times: x")
    assert f.target == BACKUP
    [alarm] = f.connected(5.0)
    assert alarm.code == UPLINK_FAILOVER and alarm.raised
    assert alarm.detail["reason"] == "commands refused 3 times: x"
