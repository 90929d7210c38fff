"""hil.platform.Receiver: the platform's rules for what it accepts (platform-interface.md).

The messages are sealed by the collector's own uplink (what the receiver
must accept); the receiver opens and checks them with its own implementation
of the contract (hil/platform/contract.py), itself checked here against the
contract's RFC 8998 vector and hand-written canonical JSON, and shown to
import none of the collector's packages.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from typing import Any

import pytest

from hil.platform import contract
from hil.platform.receiver import Receiver
from records.chain import GENESIS, seal_record
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
    out, problems = rx.handle(TOPIC, message([{**b, "resent": True}, c], seq=2))
    assert out[0] == {
        "duplicate": {"dev": "gw1", "type": "order", "seq": 2, "ts": 1, "rid": "p01.a1.n1:2",
                      "same": True},
    }  # fmt: skip
    assert [(o["record"]["rid"], o["chain"]) for o in out[1:]] == [("p01.a1.n1:3", "ok")]
    assert rx.counters["duplicates"] == 1 and problems == []


def test_a_second_different_record_under_one_rid_is_reported() -> None:
    """Deduplication would hide it: two records under one idempotency key."""
    rx = Receiver(KEYS)
    a, b = chain(2)
    rx.handle(TOPIC, message([a, b], seq=1))
    other = seal_record({**{k: v for k, v in b.items() if k not in ("h",)}, "v": "9"}, a["h"])
    out, problems = rx.handle(TOPIC, message([other], seq=2))
    assert out[0]["duplicate"]["same"] is False
    assert problems == [{"duplicate_differs": "p01.a1.n1:2", "dev": "gw1", "type": "order"}]
    assert rx.counters["duplicates_differing"] == 1


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


def test_gcm_over_gmssl_sm4_meets_the_contract_vector() -> None:
    """platform-interface.md: RFC 8998 A.1."""
    key = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
    nonce = bytes.fromhex("00001234567800000000ABCD")
    aad = bytes.fromhex("FEEDFACEDEADBEEFFEEDFACEDEADBEEFABADDAD2")
    plaintext = b"".join(bytes([b]) * 8 for b in (0xAA, 0xBB, 0xCC, 0xDD, 0xEE, 0xFF, 0xEE, 0xAA))
    sealed = contract.gcm_seal(key, nonce, plaintext, aad)
    assert sealed[:16].hex().upper() == "17F399F08C67D5EE19D0DC9969C4BB7D"
    assert sealed[-16:].hex().upper() == "83DE3541E4C2B58177E065A9BF7B62EC"
    assert contract.gcm_open(key, nonce, sealed, aad) == plaintext
    assert contract.gcm_open(key, nonce, sealed, aad + b"x") is None
    assert contract.gcm_open(key, nonce, bytes([sealed[0] ^ 1]) + sealed[1:], aad) is None


def test_canonical_json_as_the_contract_writes_it() -> None:
    value = {"b": [1, True, None, "x"], "a": {"é": "\u2028", "A": 'q"\\\n\x01'}, "": 0}
    assert contract.canonical_json(value).decode() == (
        '{"":0,"a":{"A":"q\\"\\\\\\n\\u0001","é":"\u2028"},"b":[1,true,null,"x"]}'
    )
    with pytest.raises(contract.NotCanonical):
        contract.canonical_json({"volume": 1.5})


def sealed_by_hand(body: bytes, seq: int) -> bytes:
    """An envelope the collector would never seal (its sealer refuses floats)."""
    nonce = bytes(12)
    ct = contract.gcm_seal(KEY, nonce, body, contract.aad(1, "gw1", "k1", seq, 1, "order", "none"))
    envelope = {"v": 1, "dev": "gw1", "kid": "k1", "seq": seq, "ts": 1, "type": "order",
                "zip": "none", "nonce": base64.b64encode(nonce).decode(),
                "ct": base64.b64encode(ct).decode()}  # fmt: skip
    return json.dumps(envelope).encode()


def test_a_float_in_an_order_breaks_its_chain_and_nan_is_no_json() -> None:
    rx = Receiver(KEYS)
    [a] = chain(1)
    body = json.dumps({"items": [{**a, "volume": 1.5}]}).encode()
    out, _ = rx.handle(TOPIC, sealed_by_hand(body, 1))
    assert out[0]["chain"] == "altered"
    out, problems = rx.handle(TOPIC, sealed_by_hand(b'{"items": [], "x": NaN}', 2))
    assert out == [] and problems[0]["reject"] == "bad_body"


def test_the_receiver_imports_none_of_the_collector() -> None:
    code = (
        "import sys, hil.platform.__main__, hil.platform.receiver, hil.platform.http_door\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & "
        "{'uplink', 'buffer', 'collector', 'protocols', 'config', 'records'}))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
