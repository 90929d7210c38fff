"""The platform side of commands: sign, seal, and wrap a new SM4 key (tests, demo).

Mirror of uplink/commands.py: the body is signed with the platform's SM2
private key over its canonical JSON without ``sig``, then sealed in an
envelope of type ``cmd`` with the device's SM4 key.
"""

from __future__ import annotations

import base64
import time
import uuid
from typing import Any

from uplink.commands import signed_bytes
from uplink.crypto import sm2_encrypt, sm2_sign
from uplink.envelope import seal


def command_body(
    name: str,
    args: dict[str, Any] | None = None,
    *,
    private: str,
    public: str,
    command_id: str | None = None,
    issued_at: int | None = None,
    lifetime_ms: int = 600_000,
    dev: str | None = None,
) -> dict[str, Any]:
    """A signed command body."""
    now = time.time_ns() // 1_000_000 if issued_at is None else issued_at
    body: dict[str, Any] = {
        "id": command_id or str(uuid.uuid4()),
        "name": name,
        "args": args or {},
        "issued_at": now,
        "expires_at": now + lifetime_ms,
    }
    if dev is not None:
        body["dev"] = dev
    body["sig"] = sm2_sign(private, public, signed_bytes(body))
    return body


def seal_command(body: dict[str, Any], *, dev: str, kid: str, key: bytes, seq: int) -> bytes:
    """The ``down/cmd`` payload."""
    return seal(
        body, dev=dev, kid=kid, key=key, seq=seq, ts_ms=time.time_ns() // 1_000_000, type="cmd"
    )


def seal_command_text(text: bytes, *, dev: str, kid: str, key: bytes, seq: int) -> bytes:
    """A ``down/cmd`` payload whose body is ``text`` as given: JSON a careless
    platform might send (a float, a lone surrogate) that :func:`seal` refuses."""
    return seal(
        text, dev=dev, kid=kid, key=key, seq=seq, ts_ms=time.time_ns() // 1_000_000, type="cmd"
    )


def wrap_key(device_public: str, key: bytes) -> str:
    """A new SM4 key encrypted to the device (``key.rotate`` args.key): base64 C1C3C2."""
    return base64.b64encode(sm2_encrypt(device_public, key)).decode("ascii")


async def publish_command(host: str, port: int, dev: str, payload: bytes) -> None:
    """Publish one sealed command to the device's ``down/cmd`` (QoS 1)."""
    import aiomqtt

    async with aiomqtt.Client(host, port, identifier=f"hil-cmd-{uuid.uuid4().hex[:8]}") as client:
        await client.publish(f"forecourt/v1/{dev}/down/cmd", payload, qos=1)
