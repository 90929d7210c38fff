"""The config file's remote changes on disk: atomic writes, ``.prev``, the
pending-confirmation marker and the revert note (SPEC D8, D10).

Files beside the config ``<config>``:

- ``<config>.prev`` — the file as it was before the last change (written
  before the switch; ``config.rollback`` goes back to it);
- ``<config>.pending`` — JSON :class:`Pending`, present from before the switch
  until the platform was reached with the new config (or it was reverted);
- ``<config>.reverted`` — JSON note of a revert, turned into a
  ``CONFIG_REVERTED`` alarm by the next start once its store is open.

Every write is config/atomic.py's (temp file, fsync, rename, fsync of the
directory; the mode of the file replaced kept), so a SIGKILL or a power loss
leaves each file old or new, never half. The steps
are generators (:func:`switch_steps`, :func:`revert_steps`) yielding after
each durable step, so tests can stop them at every point, as a SIGKILL would,
and check what a start then does (tests/test_config_change.py). Which file a
start runs with, at each point:

=========================  =========================================
stopped after              the next start
=========================  =========================================
inside any write           that file as it was; the temp file removed
``.prev`` written          old config, no marker: nothing changed
marker written             old config; marker's digest ≠ file: marker dropped
config switched            new config, marker pending: watched (or reverted
                           at once when its deadline has passed)
revert note written        marker pending and expired: reverted again (same note)
old config restored        marker's digest ≠ file: marker dropped; note → alarm
=========================  =========================================
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from config.atomic import fsync_dir, write_atomically

BOOT_ID_FILE = Path("/proc/sys/kernel/random/boot_id")


def prev_path(config: Path) -> Path:
    return config.with_name(config.name + ".prev")


def pending_path(config: Path) -> Path:
    return config.with_name(config.name + ".pending")


def note_path(config: Path) -> Path:
    return config.with_name(config.name + ".reverted")


def replace_keeping_prev(path: Path, data: bytes) -> None:
    """Write ``data`` over ``path`` keeping the file it replaces as ``.prev``
    (the web page's editor; ``config.set`` does the same with a marker between)."""
    if path.exists():
        write_atomically(prev_path(path), path.read_bytes())
    write_atomically(path, data)


def digest(data: bytes) -> str:
    """Identity of a file's content (not a security check: SHA-256 is in the
    standard library and fast, where pure-Python SM3 is not)."""
    return hashlib.sha256(data).hexdigest()


def boot_id() -> str | None:
    try:
        return BOOT_ID_FILE.read_text().strip() or None
    except OSError:
        return None


def boottime_s() -> float:
    """Seconds since boot, suspend included: steady across restarts of the
    process, unlike the wall clock that ``time.sync`` or a flat RTC may move."""
    return time.clock_gettime(time.CLOCK_BOOTTIME)


@dataclass(frozen=True)
class Pending:
    """A change waiting for the platform: ``new_sha`` is the switched file's digest."""

    command_id: str
    action: str  # "set" or "rollback"
    changed: list[str]
    apply: str  # "live" or "restart"
    window_s: int
    new_sha: str
    started_wall_ms: int
    boot_id: str | None
    deadline_boot_s: float

    @classmethod
    def new(
        cls, command_id: str, action: str, changed: list[str], apply: str, window_s: int, new: bytes
    ) -> Pending:
        return cls(
            command_id,
            action,
            changed,
            apply,
            window_s,
            digest(new),
            time.time_ns() // 1_000_000,
            boot_id(),
            boottime_s() + window_s,
        )

    def remaining_s(self, now_wall_ms: int, now_boot_id: str | None, now_boot_s: float) -> float:
        """Seconds left in the window, never more than the window itself.

        Same boot: from the boot-time deadline (immune to clock steps). After
        a reboot: from the wall clock, unless it reads before the change began
        (a flat RTC, a clock stepped back) — then the elapsed time is unknown
        and the window starts over from this start, once.
        """
        if self.boot_id is not None and self.boot_id == now_boot_id:
            left = self.deadline_boot_s - now_boot_s
        elif now_wall_ms < self.started_wall_ms:
            left = float(self.window_s)
        else:
            left = self.window_s - (now_wall_ms - self.started_wall_ms) / 1000
        return min(float(self.window_s), left)

    def remaining_now(self) -> float:
        return self.remaining_s(time.time_ns() // 1_000_000, boot_id(), boottime_s())

    def to_bytes(self) -> bytes:
        return json.dumps(dataclasses.asdict(self), sort_keys=True).encode()

    @classmethod
    def from_bytes(cls, raw: bytes) -> Pending:
        data = json.loads(raw)
        return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls)})


class MarkerUnreadable(Exception):
    """The marker exists but cannot be read: the change is treated as expired."""


def read_pending(config: Path) -> Pending | None:
    try:
        raw = pending_path(config).read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise MarkerUnreadable(str(exc)) from None
    try:
        return Pending.from_bytes(raw)
    except (ValueError, KeyError, TypeError) as exc:
        raise MarkerUnreadable(f"{pending_path(config)}: {exc}") from None


def switch_steps(config: Path, new: bytes, pending: Pending) -> Iterator[str]:
    """Keep the running file as ``.prev``, persist the marker, switch the file."""
    write_atomically(prev_path(config), config.read_bytes())
    yield "prev"
    write_atomically(pending_path(config), pending.to_bytes())
    yield "marker"
    write_atomically(config, new)
    yield "switched"


def switch(config: Path, new: bytes, pending: Pending) -> None:
    for _ in switch_steps(config, new, pending):
        pass


def in_effect(config: Path, pending: Pending) -> bool:
    """Whether the file is the switched one (False: never switched, or restored)."""
    try:
        return digest(config.read_bytes()) == pending.new_sha
    except OSError:
        return False


def revert_steps(config: Path, note: dict[str, Any]) -> Iterator[str]:
    """Note first (the alarm is never lost), then ``.prev`` back, then no marker."""
    write_atomically(note_path(config), json.dumps(note, sort_keys=True).encode())
    yield "note"
    write_atomically(config, prev_path(config).read_bytes())
    yield "restored"
    drop_marker(config)
    yield "unmarked"


def revert(config: Path, note: dict[str, Any]) -> None:
    for _ in revert_steps(config, note):
        pass


def drop_marker(config: Path) -> None:
    """The change is confirmed (or was never in effect): no marker."""
    pending_path(config).unlink(missing_ok=True)
    fsync_dir(config.parent)


def read_note(config: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(note_path(config).read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {"command_id": None, "reason": "revert note unreadable"}
    return data if isinstance(data, dict) else {"command_id": None, "reason": "bad revert note"}


def drop_note(config: Path) -> None:
    note_path(config).unlink(missing_ok=True)
    fsync_dir(config.parent)


def revert_note(pending: Pending | None, reason: str) -> dict[str, Any]:
    """What the ``CONFIG_REVERTED`` alarm will say (key paths only, never values)."""
    return {
        "command_id": None if pending is None else pending.command_id,
        "action": None if pending is None else pending.action,
        "changed": [] if pending is None else pending.changed,
        "window_s": None if pending is None else pending.window_s,
        "reason": reason,
        "reverted_at_ms": time.time_ns() // 1_000_000,
    }


def settle_at_start(config: Path) -> tuple[Pending | None, str | None]:
    """Run before the config is read: finish what a stop cut short.

    Returns the change still to watch (None: nothing pending) and what was
    done: ``None``, ``"dropped"`` (the switch never took effect), ``"reverted"``
    (the window had passed) or ``"watching"``.
    """
    for leftover in config.parent.glob(f".{config.name}*.new"):
        # A temp file a kill left before its rename: never read, only litter.
        leftover.unlink(missing_ok=True)
    try:
        pending = read_pending(config)
    except MarkerUnreadable as exc:
        if not prev_path(config).exists():
            drop_marker(config)
            return None, "dropped"
        revert(config, revert_note(None, f"pending marker unreadable: {exc}"))
        return None, "reverted"
    if pending is None:
        return None, None
    if not in_effect(config, pending):
        drop_marker(config)
        return None, "dropped"
    if pending.remaining_now() <= 0:
        reason = f"platform not reached within {pending.window_s} s (found at start)"
        revert(config, revert_note(pending, reason))
        return None, "reverted"
    return pending, "watching"


def confirm(config: Path, pending: Pending) -> None:
    """The platform was reached with the new config: it stays. A revert note of
    this same change (a revert cut short, then a start that worked) goes too."""
    note = read_note(config)
    if note is not None and note.get("command_id") == pending.command_id:
        drop_note(config)
    drop_marker(config)
