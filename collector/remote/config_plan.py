"""Validate a ``config.set`` / ``config.rollback`` in a short-lived child process.

The daemon holds its config as views (config/view.py) and never imports
pydantic (≈ 12 MB that would stay after the first remote change,
docs/performance.md "Footprint"). Planning a change needs the models, so it
runs here, in a fresh interpreter (``python -m collector.remote.config_plan``,
started and — past :data:`PLAN_TIMEOUT_S` — killed by
collector/remote/config_check.py ``run_child``), which reads the file, merges the
patch, validates with the same loader path as the file at start
(``config_from_data`` with the process's ``--set`` overrides), writes the
TOML text and hands back the new config *as views*, the text and the
changed key paths — or the refusal's code and message. Request and answer
are pickles over the child's stdin and stdout: this program talking to
itself, never the network. Nothing here writes a file; the daemon does
(collector/remote/config_files.py).
"""

from __future__ import annotations

import pickle
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

#: A fresh interpreter importing pydantic and the models, then validating:
#: ≈ 0.5 s here, several seconds on a 300 MHz gateway under load. Beyond this
#: the child is killed and the command refused (the platform may send it again).
PLAN_TIMEOUT_S = 60.0

#: What a child answers: ("ok", views, text, changed) or ("error", code, message).
Answer = tuple[Any, ...]


def plan_set_here(
    path: str, patch: Any, overrides: Sequence[str], running: dict[str, Any], header: str
) -> Answer:
    """In the child: the ``config.set`` plan for the file at ``path``."""
    import tomllib

    from collector.remote.config_rules import BAD_PATCH, NO_CONFIG_FILE, plan_set
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
    from collector.remote.config_rules import INVALID_CONFIG
    from config.handoff import views_of
    from config.loader import ConfigError, config_from_data, parse_toml_text
    from config.patch import changed_paths

    previous = Path(path)
    text = previous.read_bytes()
    try:
        data = parse_toml_text(text.decode("utf-8"), previous.name)
        new = config_from_data(data, list(overrides))
    except (ConfigError, UnicodeDecodeError) as exc:
        lines = exc.errors if isinstance(exc, ConfigError) else [f"{previous.name}: not UTF-8"]
        return ("error", INVALID_CONFIG, "; ".join(lines))
    views = views_of(new)
    return ("ok", views, text, changed_paths(running, views.model_dump()))


_PLANS: dict[str, Callable[..., Answer]] = {"set": plan_set_here, "rollback": plan_rollback_here}


async def in_child(plan: str, *args: Any) -> Answer:
    """``plan`` (``"set"`` or ``"rollback"``) with ``args`` in a fresh interpreter."""
    from collector.remote.config_check import run_child
    from uplink.commands import INTERNAL

    argv = [sys.executable, "-m", "collector.remote.config_plan"]
    status, out, err = await run_child(argv, pickle.dumps((plan, args)), PLAN_TIMEOUT_S)
    if status is None:
        return ("error", INTERNAL, f"the config check did not finish within {PLAN_TIMEOUT_S:g} s")
    if status != 0:
        tail = err.decode("utf-8", "replace").strip().splitlines()[-1:] or ["no output"]
        return ("error", INTERNAL, f"the config check failed (exit {status}): {tail[0]}")
    answer = pickle.loads(out)
    assert isinstance(answer, tuple)
    return answer


def main() -> int:
    plan, args = pickle.load(sys.stdin.buffer)
    answer = _PLANS[plan](*args)
    sys.stdout.buffer.write(pickle.dumps(answer))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
