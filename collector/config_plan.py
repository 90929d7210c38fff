"""Validate a ``config.set`` / ``config.rollback`` in a short-lived child process.

The daemon holds its config as views (config/view.py) and never imports
pydantic (≈ 12 MB that would stay after the first remote change; issue #10,
docs/performance.md "Footprint"). Planning a change needs the models, so it
runs here, in a fresh interpreter (multiprocessing's ``spawn``), which reads
the file, merges the patch, validates with the same loader path as the file
at start (``config_from_data`` with the process's ``--set`` overrides),
writes the TOML text and hands back the new config *as views*, the text and
the changed key paths — or the refusal's code and message. Nothing here
touches a file but to read it; the daemon writes (collector/config_files.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any

#: A fresh interpreter importing pydantic and the models, then validating:
#: ≈ 0.5 s here, several seconds on a 300 MHz gateway under load. Beyond this
#: the command is refused (the platform may send it again).
PLAN_TIMEOUT_S = 60.0

#: What a child answers: ("ok", views, text, changed) or ("error", code, message).
Answer = tuple[Any, ...]


def plan_set_here(
    path: str, patch: Any, overrides: Sequence[str], running: dict[str, Any], header: str
) -> Answer:
    """In the child: the ``config.set`` plan for the file at ``path``."""
    import tomllib

    from collector.config_change import BAD_PATCH, NO_CONFIG_FILE, plan_set
    from config.handoff import views_of
    from config.loader import ConfigError, read_toml
    from config.toml_write import dumps
    from uplink.commands import INTERNAL, CommandError

    try:
        try:
            data = read_toml(Path(path))
        except ConfigError as exc:
            raise CommandError(NO_CONFIG_FILE, "; ".join(exc.errors)) from None
        new, merged, changed = plan_set(data, patch, overrides, running)
        if not changed:
            return ("ok", None, b"", [])
        try:
            text = dumps(merged, header).encode()
        except ValueError as exc:  # a null inside an array: no TOML for it
            raise CommandError(BAD_PATCH, f"patch: {exc}") from None
        if tomllib.loads(text.decode()) != merged:  # the writer's contract, checked
            raise CommandError(INTERNAL, "config.set: the TOML written would not read back")
    except CommandError as exc:
        return ("error", exc.code, str(exc))
    return ("ok", views_of(new), text, changed)


def plan_rollback_here(path: str, overrides: Sequence[str], running: dict[str, Any]) -> Answer:
    """In the child: the ``config.rollback`` plan for ``<path>.prev``."""
    from collector.config_change import INVALID_CONFIG
    from config.handoff import views_of
    from config.loader import ConfigError, config_from_data, read_toml
    from config.patch import changed_paths

    previous = Path(path)
    try:
        new = config_from_data(read_toml(previous), list(overrides))
    except ConfigError as exc:
        lines = [line.replace(str(previous), previous.name) for line in exc.errors]
        return ("error", INVALID_CONFIG, "; ".join(lines))
    changed = changed_paths(running, new.model_dump())
    return ("ok", views_of(new), previous.read_bytes(), changed)


async def in_child(function: Any, *args: Any) -> Answer:
    """``function(*args)`` in a fresh interpreter; its answer (picklable)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from uplink.commands import INTERNAL

    pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))
    try:
        future = asyncio.get_running_loop().run_in_executor(pool, function, *args)
        return await asyncio.wait_for(future, PLAN_TIMEOUT_S)
    except TimeoutError:
        return ("error", INTERNAL, f"the config check did not finish within {PLAN_TIMEOUT_S:g} s")
    except Exception as exc:  # a dead child is a refusal, never a dead uplink
        return ("error", INTERNAL, f"the config check failed: {type(exc).__name__}: {exc}")
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
