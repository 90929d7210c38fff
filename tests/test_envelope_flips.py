"""Every single-byte change of a sealed envelope is rejected (SPEC D9/F2).

Each byte of the wire form is XORed with 0x01 and with 0x80 (a low bit and a
high bit that makes it invalid UTF-8) and with 0xFF; the receiver's
open_envelope must refuse every variant — header fields are in the AAD, the
body is under the tag, and the JSON framing is checked strictly.
"""

from __future__ import annotations

import pytest

from uplink.envelope import EnvelopeError, open_envelope, seal

KEY = bytes(range(16))
BODY = {"items": [{"rid": "p01.a1.n1:1", "volume": "30.12", "resent": False}]}


@pytest.mark.parametrize("zip", ["none", "deflate"])
def test_every_single_byte_flip_is_rejected(zip: str) -> None:
    payload = seal(BODY, dev="dev-001", kid="k1", key=KEY, seq=7, ts_ms=1, type="order", zip=zip)
    assert open_envelope(payload, {"k1": KEY}, topic_dev="dev-001").body == BODY
    accepted = []
    for index in range(len(payload)):
        for mask in (0x01, 0x80, 0xFF):
            altered = bytearray(payload)
            altered[index] ^= mask
            try:
                open_envelope(bytes(altered), {"k1": KEY}, topic_dev="dev-001")
            except EnvelopeError:
                continue
            accepted.append((index, mask, bytes(altered)))
    assert accepted == []
