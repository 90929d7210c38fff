"""hil.fleet end to end: a small fleet of real uplinks, one broker, two receivers.

Outcomes only (no timing goals: those are docs/performance.md's, measured
by ``python -m hil.fleet``): every order committed by every collector
arrives exactly once, each nozzle's chain is intact (SPEC F2), no envelope
seq is seen twice, nothing is rejected (SPEC D9: each device's own key),
and every station's retained online state is there (SPEC D7).
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace

from hil.fleet.check import Receipt, chain_problems, percentile, reordering
from hil.stack import ROOT
from records.chain import GENESIS

#: Generous: 20 collectors start, generate for 10 s and drain; CI is 2 loaded cores.
FLEET_TIMEOUT_S = 300


def test_a_small_fleet_delivers_every_order_exactly_once_with_intact_chains() -> None:
    argv = [
        sys.executable, "-m", "hil.fleet", "--json", "--collectors", "20", "--seconds", "10",
        "--rate", "2", "--workers", "2", "--receivers", "2", "--heartbeat-s", "2",
        "--idle-seconds", "1",
    ]  # fmt: skip
    run = subprocess.run(
        argv, cwd=ROOT, capture_output=True, text=True, timeout=FLEET_TIMEOUT_S, check=False
    )
    assert run.returncode == 0, (run.stdout[-3000:], run.stderr[-3000:])
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert report["generated"] > 100  # 20 collectors x 2 orders/s x 10 s, Poisson
    assert report["received_once"] == report["generated"]
    assert (report["missing"], report["duplicates"], report["unexpected"]) == (0, 0, 0)
    assert report["chain_problems"] == 0 and report["replayed_seq"] == 0
    assert report["rejects"] == {}
    assert report["devices_delivering"] == 20
    assert report["retained_online_states"] == 20
    assert report["drained"] is True
    # Two receivers behind $share: each opened a part of the messages, together all.
    assert set(report["cpu_share_of_core"]["receivers"]) == {"rx0", "rx1"}
    assert report["wire"]["order_messages"] >= 1 and report["wire"]["heartbeat_payload_bytes"] > 0


def _receipt(nseq: int, prev: str, h: str, h_ok: bool = True) -> Receipt:
    return Receipt("gw", "order", nseq, f"0.{nseq}", f"n1:{nseq}", "n1", nseq, prev, h, h_ok, nseq)


def test_the_chain_check_finds_a_gap_a_broken_link_and_an_altered_record() -> None:
    """The stream stage's chain rules, in nseq order whatever the arrival order."""
    a, b, c = "a" * 64, "b" * 64, "c" * 64
    assert chain_problems([_receipt(2, a, b), _receipt(1, GENESIS, a)]) == []
    found = chain_problems(
        [_receipt(1, GENESIS, a), _receipt(3, b, c), _receipt(4, "f" * 64, "d" * 64, h_ok=False)]
    )
    assert [(p["nseq"], p["problem"]) for p in found] == [(3, "gap"), (4, "altered"), (4, "broken")]
    assert [p["problem"] for p in chain_problems([_receipt(1, a, b)])] == ["broken"]


def test_percentile_is_nearest_rank() -> None:
    values = list(range(1, 101))
    assert (percentile(values, 50), percentile(values, 99), percentile(values, 100)) == (
        50,
        99,
        100,
    )
    assert percentile([], 50) is None


def test_reordering_counts_messages_opened_after_a_later_seq() -> None:
    """Behind a round-robin $share a device's messages may be opened out of
    order; the count and depth size the platform's replay window."""
    a, b = "a" * 64, "b" * 64
    opened = [  # (seq, nseq, opened at): seq 3 opened before 1 and 2
        replace(_receipt(3, b, "c" * 64), rx_ns=30),
        replace(_receipt(1, GENESIS, a), rx_ns=31),
        replace(_receipt(2, a, b), rx_ns=32),
    ]
    assert reordering(opened) == {"seq_late": 2, "seq_late_depth_max": 1, "nseq_late": 2}


def test_a_backlog_goes_out_one_message_per_kind_per_page() -> None:
    """hil.fleet.backlog (docs/scaling.md catch-up): a real store filled as a
    forecourt fills it, paged and cut by the uplink's own code."""
    from hil.fleet.backlog import measure

    result = measure(200, seed=3)
    assert result["records"] == 4 * result["sales"]  # lifted, fuelling, order, idle
    assert result["live_messages_per_sale"] == 4.0
    # A page goes out as one message per kind: a backlog batches ≥ 10× better
    # than live sending (one record per message).
    assert result["backlog_messages_per_sale"] * 10 < result["live_messages_per_sale"]


def test_a_record_that_cannot_be_hashed_is_a_mismatch_not_a_dead_receiver() -> None:
    """A sealed order holding a float (not canonical JSON) is written with
    h_ok 0, and the receiver goes on to the next message."""
    import io

    from hil.fleet.receiver import FleetReceiver
    from uplink.envelope import seal

    key, kid, dev = bytes(range(16)), "k-fleet", "gw-fleet"
    out = io.StringIO()
    rx = FleetReceiver(0, {kid: key}, {kid: dev}, out)
    bad = b'{"items":[{"rid":"n:1","nozzle":"n","nseq":1,"volume":1.5,"h":"00"}]}'
    good = b'{"items":[{"rid":"tank:1","tank":1}]}'
    for seq, (kind, body) in enumerate([("order", bad), ("tank", good)], start=1):
        sealed = seal(body, dev=dev, kid=kid, key=key, seq=seq, ts_ms=seq, type=kind)
        rx.handle(f"forecourt/v1/{dev}/up/{kind}", sealed, 1)
    lines = [line.split("\t") for line in out.getvalue().splitlines()]
    assert [(fields[1], fields[9]) for fields in lines] == [("order", "0"), ("tank", "1")]
