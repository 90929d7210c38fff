"""Cost of a ``config.set`` on the device, before its apply.

.venv/bin/python bench/config_change.py

Plan: read the file, merge the patch, validate (pydantic, the loader's one
path), compare with the running config, write the TOML text — in this
process, and as the daemon does it: in a ``python -m collector.remote.config_plan``
child (collector/remote/config_plan.py; a fresh interpreter each time). Switch: the
three atomic writes (``.prev``, marker, config; each fsynced with its
directory) and removing the marker, on the file system of a temporary dir.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from pathlib import Path

from collector.remote import config_files as files
from collector.remote.config_plan import in_child
from collector.remote.config_rules import plan_set
from config.handoff import views_of
from config.loader import load_config, read_toml
from config.toml_write import dumps

ROUNDS = 50
CHILD_ROUNDS = 5
EXAMPLE = Path(__file__).resolve().parent.parent / "config" / "example.toml"


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="bench-config-"))
    try:
        path = work / "collector.toml"
        shutil.copy(EXAMPLE, path)
        running = views_of(load_config(path)).model_dump()
        began = time.perf_counter()
        for i in range(ROUNDS):
            patch = {"uplink": {"heartbeat_s": 10 + i % 5}}
            _, merged, _ = plan_set(read_toml(path), patch, [], running)
            text = dumps(merged).encode()
        plan_ms = (time.perf_counter() - began) / ROUNDS * 1000
        began = time.perf_counter()
        for _ in range(ROUNDS):
            pending = files.Pending.new("bench", "set", [], "live", 60, text)
            files.switch(path, text, pending)
            files.drop_marker(path)
        switch_ms = (time.perf_counter() - began) / ROUNDS * 1000
        began = time.perf_counter()
        for i in range(CHILD_ROUNDS):
            patch = {"uplink": {"heartbeat_s": 20 + i}}
            answer = asyncio.run(in_child("set", str(path), patch, [], running, "bench"))
            assert answer[0] == "ok", answer
        child_ms = (time.perf_counter() - began) / CHILD_ROUNDS * 1000
        print(f"plan (read, merge, validate, compare, write TOML): {plan_ms:.1f} ms")
        print(f"plan in the daemon's child (fresh interpreter): {child_ms:.0f} ms")
        print(f"switch (.prev, marker, config, each fsynced) + unmark: {switch_ms:.1f} ms")
    finally:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
