"""The failover policy (uplink/failover.py, SPEC D18, F1) on its own: which
endpoint comes next, when the backup is left for the primary, and which
alarm transitions it asks to store. The wiring with real links is
tests/test_failover_netns.py; the config side is at the end."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from config.loader import load_config
from config.models import UplinkConfig
from hil.stack import ROOT
from uplink.failover import (
    NETWORK_LOSS,
    PROBES_TO_RETURN,
    UPLINK_FAILOVER,
    Endpoint,
    FailoverPolicy,
)

WIRED = Endpoint("wired", "10.0.0.1", 1883, "eth0")
CELL = Endpoint("4g", "10.0.0.1", 1883, "wwan0")
LEASED = Endpoint("leased", "10.9.0.1", 1883, "eth1")


def policy(*endpoints: Endpoint, attempts: int = 2, loss_s: float = 100.0) -> FailoverPolicy:
    return FailoverPolicy(
        endpoints or (WIRED, CELL),
        attempts_per_endpoint=attempts,
        probe_every_s=10.0,
        network_loss_after_s=loss_s,
        now=0.0,
        rng=random.Random(3),
    )


def test_the_primary_is_tried_first_and_connecting_there_raises_nothing() -> None:
    p = policy()
    assert p.target == WIRED
    assert p.connected(1.0) == []
    assert not p.on_backup
    assert p.probe_in(1.0) == float("inf")


def test_failed_connects_move_to_the_next_endpoint_after_the_bounded_attempts() -> None:
    p = policy(WIRED, CELL, LEASED, attempts=3)
    assert [p.failed(t, "refused") for t in (1, 2)] == [False, False]
    assert p.target == WIRED
    assert p.failed(3, "refused") is True
    assert p.target == CELL
    for t in (4, 5, 6):
        p.failed(t, "timed out")
    assert p.target == LEASED
    for t in (7, 8, 9):
        p.failed(t, "timed out")
    assert p.target == WIRED, "the list wraps round to the primary"


def test_an_interface_known_down_is_left_at_once() -> None:
    p = policy(attempts=5)
    assert p.failed(1.0, "network unreachable", link_down=True) is True
    assert p.target == CELL


def test_a_single_endpoint_is_retried_forever() -> None:
    p = policy(WIRED)
    assert not any(p.failed(t, "refused", link_down=True) for t in range(10))
    assert p.target == WIRED


def test_failover_raised_on_a_backup_and_cleared_back_on_the_primary() -> None:
    p = policy(attempts=1)
    p.connected(0.5)
    assert p.lost(10.0, "keepalive timeout") is True
    [raised] = p.connected(11.0)
    assert (raised.code, raised.raised) == (UPLINK_FAILOVER, True)
    assert raised.detail == {"from": "wired", "to": "4g", "reason": "keepalive timeout"}
    assert p.on_backup
    # The primary is probed; PROBES_TO_RETURN answers in a row take it back.
    now = 11.0 + p.probe_in(11.0)
    assert 8.0 <= now - 11.0 <= 12.0, "the probe period with its jitter"
    assert p.probe_answered(now, False) is False
    for i in range(PROBES_TO_RETURN - 1):
        now += p.probe_in(now)
        assert p.probe_answered(now, True) is False, i
    now += p.probe_in(now)
    assert p.probe_answered(now, True) is True
    p.leave_for_primary(now)
    assert p.target == WIRED and p.active is None
    [cleared] = p.connected(now + 1)
    assert (cleared.code, cleared.raised) == (UPLINK_FAILOVER, False)
    assert cleared.detail == {"from": "4g", "to": "wired"}
    assert p.connected(now + 2) == [], "nothing more to clear"


def test_a_primary_that_fails_again_after_the_return_raises_no_second_alarm() -> None:
    p = policy(attempts=1)
    p.failed(1.0, "refused")
    assert [a.code for a in p.connected(2.0)] == [UPLINK_FAILOVER]
    p.leave_for_primary(3.0)
    assert p.failed(4.0, "refused") is True, "the primary's handshake fails after its probe"
    assert p.connected(5.0) == [], "still on a backup: UPLINK_FAILOVER stays raised"
    assert p.failover_raised


def test_network_loss_raised_after_the_threshold_and_cleared_with_the_outage() -> None:
    p = policy(attempts=1, loss_s=100.0)
    p.connected(0.0)
    p.lost(50.0, "keepalive timeout", link_down=True)
    assert p.loss_in(60.0) == pytest.approx(90.0)
    assert p.check_loss(149.0, 1_000_000) == []
    p.failed(120.0, "timed out")
    [loss] = p.check_loss(150.0, 1_000_000)
    assert (loss.code, loss.raised) == (NETWORK_LOSS, True)
    assert loss.detail["down_since_ms"] == 1_000_000 - 100_000
    assert loss.detail["after_s"] == 100
    assert loss.detail["endpoints"] == ["wired", "4g"]
    assert loss.detail["last_error"] == "4g: timed out"
    assert p.check_loss(200.0, 1_050_000) == [], "raised once per outage"
    assert p.loss_in(200.0) == float("inf")
    alarms = {(a.code, a.raised): a.detail for a in p.connected(230.0)}  # on 4G: wired is next
    assert alarms[(NETWORK_LOSS, False)] == {"outage_s": 180, "endpoint": "wired"}


def test_network_loss_counts_from_start_when_nothing_was_ever_reached() -> None:
    p = policy(loss_s=30.0)
    for t in range(1, 30, 5):
        p.failed(float(t), "refused")
    assert p.check_loss(29.0, 0) == []
    assert [a.code for a in p.check_loss(30.0, 0)] == [NETWORK_LOSS]


def test_a_short_outage_raises_no_network_loss() -> None:
    p = policy(loss_s=100.0)
    p.connected(0.0)
    p.lost(10.0, "gone")
    assert p.check_loss(60.0, 0) == []
    assert p.connected(60.0) == []
    assert p.check_loss(500.0, 0) == [], "connected: nothing due"


def test_states_restored_from_the_store_are_cleared_when_they_end() -> None:
    """A restart during an outage on a backup: both states end at the next
    connect to the primary; the outage counts from its stored start."""
    p = policy()
    p.restore(0.0, 1_000_000, failover_raised=True, loss_down_since_ms=1_000_000 - 300_000)
    alarms = {(a.code, a.raised): a.detail for a in p.connected(5.0)}
    assert set(alarms) == {(NETWORK_LOSS, False), (UPLINK_FAILOVER, False)}
    assert alarms[(NETWORK_LOSS, False)]["outage_s"] == 305


def test_a_restored_failover_clears_naming_the_backup_it_was_stored_with() -> None:
    """Three endpoints, a restart while on the second: the clear says it left
    the backup the stored raise named, not a guess."""
    p = policy(WIRED, CELL, LEASED)
    p.restore(0.0, 0, failover_raised=True, loss_down_since_ms=None, backup_name="4g")
    (clear,) = p.connected(1.0)
    assert (clear.code, clear.raised, clear.detail) == (
        UPLINK_FAILOVER,
        False,
        {"from": "4g", "to": "wired"},
    )


def test_a_transition_the_store_refused_is_asked_for_again() -> None:
    """Uplink._emit undoes a link alarm its store refused: the loss is raised
    again at the next check, the failover again at the next connect."""
    p = policy(attempts=1, loss_s=5.0)
    p.failed(0.0, "refused")  # to the 4G backup
    (loss,) = p.check_loss(6.0, 0)
    p.undo(loss)
    assert [(a.code, a.raised) for a in p.check_loss(7.0, 0)] == [(NETWORK_LOSS, True)]
    alarms = p.connected(8.0)
    (failover,) = [a for a in alarms if a.code == UPLINK_FAILOVER]
    p.undo(failover)
    p.lost(9.0, "gone")
    p.failed(9.5, "refused")  # back round to the backup
    again = [(a.code, a.raised) for a in p.connected(10.0)]
    assert (UPLINK_FAILOVER, True) in again


def test_alarm_details_are_storable_canonical_json() -> None:
    """The store refuses floats (the envelope seals canonical JSON)."""
    p = policy(attempts=1, loss_s=1.5)
    p.failed(0.7, "refused")
    p.failed(1.9, "refused")
    alarms = p.check_loss(2.3, 10_000) + p.connected(3.7)
    for alarm in alarms:
        for value in alarm.detail.values():
            assert not isinstance(value, float), alarm


# --- config: [[uplink.endpoints]] and the host/port shorthand ---------------

BASE = {"keys_file": "/k.toml", "kid": "k1"}


def test_the_host_port_shorthand_is_one_endpoint() -> None:
    u = UplinkConfig.model_validate({**BASE, "host": "mqtt.example", "port": 8883})
    [only] = u.endpoint_list()
    assert (only.label, only.host, only.port, only.interface) == (
        "mqtt.example:8883",
        "mqtt.example",
        8883,
        None,
    )


def test_a_dumped_config_with_endpoints_validates_again() -> None:
    """A full dump carries host/port at their defaults beside the endpoints
    (config.get, a config written back): that is not "both"."""
    u = UplinkConfig.model_validate({**BASE, "endpoints": [{"name": "wired", "host": "10.1.0.1"}]})
    again = UplinkConfig.model_validate(
        {k: v for k, v in u.model_dump(mode="json").items() if v is not None}
    )
    assert [e.label for e in again.endpoint_list()] == ["wired"]


def test_endpoints_in_order_with_interfaces() -> None:
    u = UplinkConfig.model_validate(
        {
            **BASE,
            "endpoints": [
                {"name": "wired", "host": "10.1.0.1", "interface": "eth0"},
                {"name": "4g", "host": "10.1.0.1", "port": 8883, "interface": "wwan0", "tls": True},
            ],
        }
    )
    assert [(e.label, e.port, e.interface, e.tls) for e in u.endpoint_list()] == [
        ("wired", 1883, "eth0", None),
        ("4g", 8883, "wwan0", True),
    ]


@pytest.mark.parametrize(
    ("uplink", "message"),
    [
        (
            {"host": "x", "endpoints": [{"host": "y"}]},
            "give either uplink.host/port or [[uplink.endpoints]], not both",
        ),
        ({"endpoints": [{"host": "y"}, {"host": "y"}]}, "endpoint 'y:1883' is listed twice"),
        ({"endpoints": [{"host": "y", "interface": "../eth0"}]}, "not a network interface name"),
        ({"endpoints": [{"host": "y", "interface": "a" * 16}]}, "at most 15 characters"),
        ({"endpoints": [{"host": "y"}], "attempts_per_endpoint": 0}, "greater than or equal to 1"),
    ],
)
def test_bad_endpoint_configs_are_refused(uplink: dict[str, object], message: str) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=message.replace("[", r"\[").replace("]", r"\]")):
        UplinkConfig.model_validate({**BASE, **uplink})


def test_only_an_endpoint_not_yet_failed_is_fresh_so_a_total_outage_backs_off() -> None:
    """A new endpoint gets a prompt first attempt; once every endpoint has
    failed in this outage none is fresh, so the loop's backoff grows."""
    p = policy(attempts=1)
    p.connected(0.0)
    assert p.lost(1.0, "gone", link_down=True) and p.fresh_target
    assert p.failed(1.2, "unreachable") and not p.fresh_target, "wired failed already"
    assert p.failed(1.5, "unreachable") and not p.fresh_target
    p.connected(2.0)
    assert p.lost(3.0, "gone") and p.fresh_target, "a connect starts a new round"


def test_the_commented_endpoints_of_example_toml_load(tmp_path: Path) -> None:
    """config/example.toml documents [[uplink.endpoints]] in comments: the
    commented block, switched on in place of host/port, is a valid config."""
    text = (ROOT / "config" / "example.toml").read_text()
    text = text.replace('host = "mqtt.platform.example.cn"\nport = 8883\n', "", 1)
    start = text.index('# [[uplink.endpoints]]\n# name = "wired"')
    end = text.index('# interface = "wwan0"') + len('# interface = "wwan0"')
    block = "\n".join(line.removeprefix("# ") for line in text[start:end].splitlines())
    config = tmp_path / "example.toml"
    config.write_text(text[:start] + block + text[end:])
    endpoints = load_config(config).uplink.endpoint_list()
    assert [(e.label, e.interface) for e in endpoints] == [("wired", "eth0"), ("4g", "wwan0")]
