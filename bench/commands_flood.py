"""SM2 verify cost, and the poll loop's cadence under a flood of forged commands.

    .venv/bin/python bench/commands_flood.py [--seconds 5] [--tick-ms 30]

Prints: SM2 sign/verify ms; then a 30 ms ticker (the poll loop's shape) runs
alone and under a flood of validly sealed commands with forged signatures
(the worst case: they pass the cheap checks and reach SM2), fed as fast as the
single command worker takes them. Reports tick lateness p50/p99/max and the
commands verified vs dropped by the token bucket. Figures go to the notes.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from hil.platform.commands import command_body, seal_command
from uplink import commands as c
from uplink.crypto import sm2_generate, sm2_sign, sm2_verify

DEV = "bench-dev"
KEY = bytes(16)


async def ticker(tick_s: float, seconds: float) -> list[float]:
    late: list[float] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    next_at = loop.time() + tick_s
    while loop.time() < deadline:
        await asyncio.sleep(max(0.0, next_at - loop.time()))
        late.append((loop.time() - next_at) * 1000)
        next_at += tick_s
    return late


async def flood(processor: c.CommandProcessor, payloads: list[bytes], seconds: float) -> int:
    sent = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        await processor.handle(payloads[sent % len(payloads)])
        sent += 1
        await asyncio.sleep(0)
    return sent


def summary(name: str, late: list[float]) -> None:
    q = statistics.quantiles(late, n=100)
    print(f"{name}: ticks {len(late)} late ms p50 {q[49]:.2f} p99 {q[98]:.2f} max {max(late):.2f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--tick-ms", type=float, default=30.0)
    args = parser.parse_args()
    private, public = sm2_generate()
    t0 = time.perf_counter()
    sigs = [sm2_sign(private, public, b"x" * 200) for _ in range(10)]
    sig = sigs[0]
    t1 = time.perf_counter()
    for _ in range(10):
        sm2_verify(public, sig, b"x" * 200)
    t2 = time.perf_counter()
    print(f"SM2 sign {(t1 - t0) * 100:.1f} ms, verify {(t2 - t1) * 100:.1f} ms (gmssl)")
    forger = sm2_generate()
    payloads = [
        seal_command(
            command_body("device.status", None, private=forger[0], public=forger[1]),
            dev=DEV,
            kid="k",
            key=KEY,
            seq=i,
        )
        for i in range(20)
    ]
    tick = args.tick_ms / 1000
    summary("idle", asyncio.run(ticker(tick, args.seconds)))
    with tempfile.TemporaryDirectory() as tmp:
        processor = c.CommandProcessor(
            device_id=DEV,
            platform_public=public,
            keys={"k": KEY},
            replay=c.ReplayLog(Path(tmp) / "r.sqlite"),
        )

        async def both() -> tuple[list[float], int]:
            late, sent = await asyncio.gather(
                ticker(tick, args.seconds), flood(processor, payloads, args.seconds)
            )
            return late, sent

        late, sent = asyncio.run(both())
        summary("flood", late)
        verified = processor.counters[c.BAD_SIGNATURE]
        dropped = processor.counters[c.RATE_LIMITED]
        print(f"flood: {sent} forged commands, {verified} reached SM2, {dropped} dropped by rate")


if __name__ == "__main__":
    main()
