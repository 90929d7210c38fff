"""hil.platform.Receiver: the platform's rules for what it accepts (platform-interface.md)."""

from __future__ import annotations

from typing import Any

from hil.platform.receiver import Receiver
from uplink.chain import GENESIS, seal_record
from uplink.envelope import seal

KEY = bytes(range(16))
KEYS = {"k1": KEY}
TOPIC = "forecourt/v1/gw1/up/order"


def message(items: list[dict[str, Any]], seq: int, dev: str = "gw1") -> bytes:
    return seal({"items": items}, dev=dev, kid="k1", key=KEY, seq=seq, ts_ms=1, type="order")


def chain(n: int, nozzle: str = "p01.a1.n1") -> list[dict[str, Any]]:
    records, prev = [], GENESIS
    for i in range(1, n + 1):
        r = seal_record({"rid": f"{nozzle}:{i}", "nozzle": nozzle, "nseq": i, "v": str(i)}, prev)
        records.append(r)
        prev = r["h"]
    return records


def test_records_are_printed_once_with_their_chain_state() -> None:
    rx = Receiver(KEYS)
    a, b, c = chain(3)
    out, problems = rx.handle(TOPIC, message([a, b], seq=1))
    assert [(o["record"]["rid"], o["chain"]) for o in out] == [
        ("p01.a1.n1:1", "ok"),
        ("p01.a1.n1:2", "ok"),
    ]
    assert problems == []
    # A resend of b with c in a new message: b is a duplicate, c follows it.
    out, problems = rx.handle(TOPIC, message([b, c], seq=2))
    assert [(o["record"]["rid"], o["chain"]) for o in out] == [("p01.a1.n1:3", "ok")]
    assert rx.counters["duplicates"] == 1


def test_a_replayed_seq_is_rejected() -> None:
    rx = Receiver(KEYS)
    payload = message(chain(1), seq=7)
    assert rx.handle(TOPIC, payload)[0]
    out, problems = rx.handle(TOPIC, payload)
    assert out == [] and problems == [{"reject": "replay", "topic": TOPIC, "seq": 7}]


def test_dev_of_topic_and_envelope_must_agree() -> None:
    rx = Receiver(KEYS)
    out, problems = rx.handle("forecourt/v1/other/up/order", message(chain(1), seq=1))
    assert out == [] and problems[0]["reject"] == "dev_mismatch"


def test_missing_and_altered_links_are_reported() -> None:
    rx = Receiver(KEYS)
    a, b, c = chain(3)
    out, problems = rx.handle(TOPIC, message([a, c], seq=1))
    assert [o["chain"] for o in out] == ["ok", "gap"]
    assert problems == [{"chain": "gap", "dev": "gw1", "rid": "p01.a1.n1:3"}]
    forged = dict(b, v="999")  # edited on the box after hashing
    out, _ = rx.handle(TOPIC, message([forged], seq=2))
    assert out[0]["chain"] == "altered"


def test_wrong_key_is_rejected_not_printed() -> None:
    rx = Receiver({"k1": bytes(16)})
    out, problems = rx.handle(TOPIC, message(chain(1), seq=1))
    assert out == [] and problems[0]["reject"] == "bad_tag"
