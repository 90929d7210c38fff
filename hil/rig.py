"""Several simulators in one process: dispensers, POS masters and buses.

    python -m hil.rig SPEC.json

``SPEC.json`` is a list of ``[kind, argv]``, ``kind`` one of ``dispenser``,
``pos``, ``bus``, ``argv`` what ``python -m hil.<kind>`` would take. Each
part runs as it runs alone (its own ``amain``), all on one event loop: a
test with a dozen lines starts one interpreter instead of a dozen or three
dozen, which on a loaded box took longer than the lines' own work. The
dispensers and POS masters start first; the buses once the links they join
exist. SIGTERM / SIGINT stop every part as they would stop it alone; each
part prints what it prints alone (a bus's counts carry its ``tap``). Exit
status: the worst of the parts'.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

#: How long the buses wait for the links they join, seconds.
LINKS_WITHIN_S = 30.0


def part(kind: str, argv: list[str]) -> Coroutine[Any, Any, int]:
    """The coroutine ``python -m hil.<kind> argv`` runs."""
    if kind == "dispenser":
        from hil.dispenser import sim
        from hil.dispenser.responder import load_responder

        args, tz = sim.parse_args(argv)
        return sim.amain(args, tz, load_responder(args.protocol))
    if kind == "pos":
        from hil import pos

        return pos.amain(pos.parse_args(argv))
    if kind == "bus":
        from hil import bus

        return bus.amain(bus.parse_args(argv))
    raise ValueError(f"unknown part {kind!r}")


def links_of(argv: list[str]) -> list[Path]:
    """The ``--pos`` and ``--pump`` links a bus opens."""
    return [Path(argv[i + 1]) for i, a in enumerate(argv[:-1]) if a in ("--pos", "--pump")]


async def amain(spec: list[tuple[str, list[str]]]) -> int:
    loop = asyncio.get_running_loop()
    stops: list[tuple[Callable[..., object], tuple[Any, ...]]] = []
    own = loop.add_signal_handler

    def collect(sig: int, callback: Callable[..., object], *args: Any) -> None:
        if sig in (signal.SIGTERM, signal.SIGINT):
            stops.append((callback, args))  # every part's own stop, not the last one's
        else:
            own(sig, callback, *args)

    def stop_all() -> None:
        for callback, args in stops:
            callback(*args)

    loop.add_signal_handler = collect  # type: ignore[method-assign,assignment]
    for sig in (signal.SIGTERM, signal.SIGINT):
        own(sig, stop_all)
    tasks = [loop.create_task(part(kind, argv)) for kind, argv in spec if kind != "bus"]
    for kind, argv in spec:
        if kind != "bus":
            continue
        deadline = loop.time() + LINKS_WITHIN_S
        while not all(link.exists() for link in links_of(argv)):
            if loop.time() > deadline or any(t.done() for t in tasks):
                stop_all()
                break
            await asyncio.sleep(0.02)
        else:
            tasks.append(loop.create_task(part(kind, argv)))
    codes = await asyncio.gather(*tasks, return_exceptions=True)
    bad = [c for c in codes if not isinstance(c, int)]
    for exc in bad:
        print(json.dumps({"rig": "part failed", "error": repr(exc)}), file=sys.stderr, flush=True)
    return 1 if bad else max((c for c in codes if isinstance(c, int)), default=0)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m hil.rig SPEC.json", file=sys.stderr)
        return 2
    spec = [
        (str(kind), [str(a) for a in part_argv])
        for kind, part_argv in json.loads(Path(args[0]).read_text())
    ]
    return asyncio.run(amain(spec))


if __name__ == "__main__":
    sys.exit(main())
