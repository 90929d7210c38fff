"""orders.resend on the uplink side: exactly the selected orders go out again,
with ``resent: true``, in per-nozzle order, rid/nseq/h unchanged (
platform-interface.md ``orders.resend``). Real mosquitto, real envelopes."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import aiomqtt

from buffer.store import OrderStore
from hil.stack import Mosquitto
from records.chain import record_hash
from uplink.envelope import open_envelope
from uplink.mqtt import Uplink, UplinkSettings

KEY = bytes(range(16))
DEV = "DEV-RESEND"


async def scenario(broker: Mosquitto, store: OrderStore) -> list[dict[str, Any]]:
    settings = UplinkSettings(
        device_id=DEV, host="127.0.0.1", port=broker.port, kid="k1", key=KEY,
        batch_max_records=3, max_inflight=2, heartbeat_s=60,
    )  # fmt: skip
    uplink = Uplink(settings, store, lambda: {})
    got: list[dict[str, Any]] = []
    async with aiomqtt.Client("127.0.0.1", broker.port, identifier="rx-resend") as rx:
        await rx.subscribe(settings.topic("up/order"), qos=1)

        async def receive(n: int) -> None:
            async with asyncio.timeout(30):
                async for message in rx.messages:
                    assert isinstance(message.payload, bytes)
                    opened = open_envelope(message.payload, {"k1": KEY}, topic_dev=DEV)
                    got.extend(opened.body["items"])
                    if len(got) >= n:
                        return

        task = asyncio.create_task(uplink.run())
        try:
            await receive(10)
            assert uplink.resend(nozzle="n1", from_nseq=2, to_nseq=4) == 3
            await receive(13)
            with contextlib.suppress(TimeoutError):  # nothing more comes
                async with asyncio.timeout(1.5):
                    await receive(14)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    return got


def test_resend_publishes_exactly_the_selection_with_resent_true(
    tmp_path: Path, broker: Mosquitto
) -> None:
    store = OrderStore(tmp_path / "s.sqlite")
    for i in range(1, 6):
        for nozzle in ("n1", "n2"):
            store.append_order(nozzle, {"order_no": str(i)}, source_key=str(i))
    got = asyncio.run(scenario(broker, store))
    first, again = got[:10], got[10:]
    assert all(item["resent"] is False for item in first)
    assert [r["rid"] for r in again] == ["n1:2", "n1:3", "n1:4"]
    assert all(item["resent"] is True for item in again)
    originals = {r["rid"]: r for r in first}
    for r in again:  # same record, same chain hash: resent is outside it
        assert {**r, "resent": False} == originals[r["rid"]]
        assert record_hash(r) == r["h"]
    assert store.unsent(0, 100) == []
