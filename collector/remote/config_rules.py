"""What a remote config change may be, checked before anything is written (SPEC D8, D10).

The rules of ``config.set`` / ``config.rollback`` (collector/remote/config_change.py):
the confirm window's bounds, the keys applied live and the keys never
changed remotely, the refusal codes, and :func:`plan_set`, which validates a
patch exactly as the file is at start. No I/O; :func:`plan_set` imports
pydantic, so the daemon runs it in a child (collector/remote/config_plan.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from config.models import Config
    from config.patch import Path as KeyPath

#: Default confirm window: at the default reconnect backoff (up to 60 s
#: between attempts, 15 s per connect) five minutes is several attempts, so a
#: good config on a slow 4G link is not reverted for one unlucky try.
CONFIRM_DEFAULT_S = 300
#: Shortest window: a start on the slow ARM takes seconds and one connect may
#: take CONNECT_TIMEOUT_S (15 s); below 30 s a healthy config could be reverted.
CONFIRM_MIN_S = 30
#: Longest window: a wrong broker delivers nothing (it is all stored) for at
#: most this long before the box undoes the change by itself.
CONFIRM_MAX_S = 3600
#: Keys applied without a restart, each because the running part reads it
#: anew: the heartbeat loop its period, each port's sink its edge settings
#: per order, time.sync its thresholds. Anything else (links, ports, store,
#: log set-up, keys) is read once at start: a restart is the correct apply.
LIVE_KEYS: frozenset[tuple[str, ...]] = frozenset(
    {
        ("uplink", "heartbeat_s"),
        ("edge", "price_floors"),
        ("edge", "amount_tolerance"),
        ("edge", "price_ceilings"),
        ("edge", "price_max"),
        ("edge", "max_flow_l_per_min"),
        ("edge", "longest_fill_s"),
        ("edge", "pump_clock_skew_s"),
        ("edge", "held_sale_max_age_s"),
        ("edge", "grades"),
        ("edge", "zero_sale_protocols"),
        ("clock", "step_threshold_ms"),
        ("clock", "alarm_threshold_ms"),
    }
)

ARGS = frozenset({"patch", "confirm_within_s"})

#: Keys never changed remotely: a new store path would leave every record
#: still unsent in the current store behind, undelivered.
FIXED_KEYS: frozenset[tuple[str, ...]] = frozenset({("store", "path")})

BAD_PATCH = "BAD_PATCH"
INVALID_CONFIG = "INVALID_CONFIG"
CHANGE_PENDING = "CHANGE_PENDING"
NO_PREVIOUS = "NO_PREVIOUS"
NO_CONFIG_FILE = "NO_CONFIG_FILE"
WRITE_FAILED = "WRITE_FAILED"


def is_live(changed: Sequence[KeyPath]) -> bool:
    return all(tuple(str(p) for p in path[:2]) in LIVE_KEYS for path in changed)


def check_fixed(changed: Sequence[KeyPath]) -> None:
    from config.patch import dotted
    from uplink.commands import CommandError

    fixed = [dotted(p) for p in changed if tuple(str(x) for x in p[:2]) in FIXED_KEYS]
    if fixed:
        reasons = [
            f"{key}: not changed remotely (unsent records would stay behind)" for key in fixed
        ]
        raise CommandError(BAD_PATCH, "; ".join(reasons))


def shadowed(touched: Sequence[KeyPath], overrides: Sequence[str]) -> list[str]:
    """Patched keys a ``--set`` of this process overrides: the change would not
    apply, so it is refused rather than silently ignored."""
    from config.patch import dotted

    keys = [item.partition("=")[0].strip() for item in overrides]
    out = []
    for path in touched:
        key = dotted(path)
        for k in keys:
            if key == k or key.startswith(k + ".") or k.startswith(key + "."):
                out.append(f"{key}: overridden by --set {k} on the command line")
    return out


def confirm_window(args: dict[str, Any]) -> int:
    from uplink.commands import BAD_REQUEST, CommandError

    window = args.get("confirm_within_s", CONFIRM_DEFAULT_S)
    if not isinstance(window, int) or isinstance(window, bool):
        raise CommandError(BAD_REQUEST, "confirm_within_s must be an integer of seconds")
    if not CONFIRM_MIN_S <= window <= CONFIRM_MAX_S:
        raise CommandError(
            BAD_REQUEST, f"confirm_within_s must be {CONFIRM_MIN_S}..{CONFIRM_MAX_S}, got {window}"
        )
    return window


def plan_set(
    data: dict[str, Any], patch: Any, overrides: Sequence[str], running: dict[str, Any]
) -> tuple[Config, dict[str, Any], list[KeyPath]]:
    """The validated new config, its file data and the changed keys; refusals
    as ``CommandError`` with ``key.path: reason`` lines. Touches no file.
    ``running``: the daemon's views' ``model_dump()`` — compared with the new
    config's views, so a secret compares by value on both sides (a pydantic
    SecretStr never equals a view's Secret: every change looked like a new
    password). Imports pydantic: the daemon runs it in a child
    (collector/remote/config_plan.py)."""
    from config.handoff import views_of
    from config.loader import ConfigError, config_from_data, floats_from_decimal_strings
    from config.patch import PatchError, changed_paths, merge
    from uplink.commands import CommandError

    try:
        merged, touched = merge(data, patch)
    except PatchError as exc:
        raise CommandError(BAD_PATCH, str(exc)) from None
    merged = floats_from_decimal_strings(merged)
    if lines := shadowed(touched, overrides):
        raise CommandError(BAD_PATCH, "; ".join(lines))
    try:
        new = config_from_data(merged, overrides)
    except ConfigError as exc:
        raise CommandError(INVALID_CONFIG, "; ".join(exc.errors)) from None
    return new, merged, changed_paths(running, views_of(new).model_dump())
