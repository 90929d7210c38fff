"""``config.set`` / ``config.rollback`` and their confirm window (SPEC D8, D10).

A change is validated exactly as the file is at start (config/loader.py
``config_from_data``, with the process's own ``--set`` overrides) in a
short-lived child (collector/remote/config_plan.py: the daemon never imports
pydantic), written
with the marker first (collector/remote/config_files.py), then applied: live when
every changed key is in :data:`LIVE_KEYS`, otherwise by a clean restart
(exit 75, as ``device.restart``). The running collector — this one for a
live change, the next start for a restart — then stores a ``CONFIG_CHANGED``
record; the change is confirmed when the broker acknowledges a batch
published after it (MQTT connected, a QoS 1 publish acknowledged: that
record, or the backlog before it) within ``confirm_within_s``. If not,
``.prev`` is put back, a note left for ``CONFIG_REVERTED``, and the
collector restarts with the old config, which delivers that alarm.

What a change may be (windows, live keys, codes, validation) is
collector/remote/config_rules.py. The daemon's hooks are narrow:
:class:`ConfigChanges` (one task in its TaskGroup, two commands) and
:func:`revert_failed_start` (a new config that cannot start is reverted at
once instead of looping until its deadline).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from collector.remote import config_files as files
from collector.remote.config_rules import (
    ARGS,
    CHANGE_PENDING,
    NO_PREVIOUS,
    WRITE_FAILED,
    check_fixed,
    confirm_window,
    is_live,
)
from collector.retry import Retry

if TYPE_CHECKING:
    from buffer.commits import Outcome
    from collector.parts import LiveParts
    from config.models import Config
    from config.patch import Path as KeyPath
    from uplink.commands import CommandProcessor

log = structlog.get_logger("config_change")

#: How often the watch looks at the store for the acknowledgement.
CONFIRM_POLL_S = 0.5

#: A revert that could not be written (a full or briefly read-only flash) is
#: tried again, from this pause doubling to the next: the box must neither
#: stay on a config the platform never confirmed nor, with its marker still
#: there, refuse every later change until someone restarts it.
REVERT_RETRY_MIN_S = 5.0
REVERT_RETRY_MAX_S = 300.0

CHANGED_CODE, REVERTED_CODE = "CONFIG_CHANGED", "CONFIG_REVERTED"


def revert_failed_start(config_path: Path, error: str) -> bool:
    """A switched config that stops the start (StartError) is reverted at once;
    True when it was (the caller exits 75 to be started again)."""
    try:
        pending = files.read_pending(config_path)
        if pending is None or not files.in_effect(config_path, pending):
            return False
        reason = f"the new config did not start: {error}"
        files.revert(config_path, files.revert_note(pending, reason))
    except (OSError, files.MarkerUnreadable):
        log.exception("config_revert_failed")
        return False
    log.warning("config_reverted", command_id=pending.command_id, reason="start failed")
    return True


class ConfigChanges:
    """The confirm watch (one task) and the ``config.set`` / ``config.rollback``
    handlers of one running collector."""

    def __init__(self, collector: LiveParts, config_path: Path, overrides: Sequence[str]) -> None:
        self.collector = collector
        self.path = config_path
        self.overrides = list(overrides)
        self._armed = asyncio.Event()
        self._pending: files.Pending | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        #: Held from reading the file to writing it, by config.set / rollback
        #: and by the web page's editor: a save landing while a change is
        #: planned (a child reads the file) would be written over unseen.
        self.file_lock = asyncio.Lock()
        #: Failures caught and survived, by log event (``forecourt status``).
        self.errors: dict[str, int] = {}
        try:
            pending = files.read_pending(config_path)
        except files.MarkerUnreadable:
            pending = None  # settled by cli before the config was read; cannot recur
        if pending is not None and files.in_effect(config_path, pending):
            self._arm(pending)

    def _arm(self, pending: files.Pending) -> None:
        self._pending = pending
        self._armed.set()

    # -- the watch -------------------------------------------------------------

    async def run(self) -> None:
        """Deliver a revert note as CONFIG_REVERTED, then watch each change.
        A bug here is logged, never a reason to stop collecting."""
        try:
            self._deliver_note()
        except Exception:
            self._failed("config_note_failed")
        while True:
            await self._armed.wait()
            self._armed.clear()
            if self._pending is not None:
                try:
                    await self._watch(self._pending)
                except Exception:
                    self._failed("config_watch_failed")

    def _failed(self, event: str, **fields: Any) -> None:
        """Inside an ``except``: logged with the traceback, counted; collecting goes on."""
        self.errors[event] = self.errors.get(event, 0) + 1
        log.exception(event, **fields)

    def _deliver_note(self) -> None:
        note = files.read_note(self.path)
        if note is None:
            return
        rid = f"device:{REVERTED_CODE}:{note.get('command_id')}:{note.get('reverted_at_ms')}"

        def drop(outcome: Outcome) -> None:
            if not outcome.kept:
                return  # the note stays: delivered at the next start
            try:
                files.drop_note(self.path)  # stored twice at worst: the same rid, deduplicated
            except OSError:  # never a reason to stop collecting
                self._failed("config_note_not_removed")

        # The note is the alarm's only copy until its commit: removed only then.
        self._store_alarm(REVERTED_CODE, rid, note, then=drop)

    def _store_alarm(
        self,
        code: str,
        rid: str,
        detail: dict[str, Any],
        then: Callable[[Outcome], None] | None = None,
    ) -> bool:
        from collector.station.alarm_store import store_alarm

        store, uplink = self.collector.store, self.collector.uplink
        assert store is not None and uplink is not None
        tz = self.collector.config.device.tzinfo
        # Its own rid, one per command: stored again at a restart, deduplicated.
        return store_alarm(
            store, "device", code, True, tz, detail, rid=rid, wake=uplink.wake, then=then
        )

    async def _watch(self, pending: files.Pending) -> None:
        from buffer.store import StoreError

        store, uplink = self.collector.store, self.collector.uplink
        assert store is not None and uplink is not None
        # Any batch the broker acknowledges from now on proves the link: with
        # a backlog of unsent records (days offline) CONFIG_CHANGED itself is
        # published only after them, possibly after the window.
        acked_before = uplink.stats.messages
        rid = f"device:{CHANGED_CODE}:{pending.command_id}"
        detail = {
            "command_id": pending.command_id,
            "action": pending.action,
            "changed": pending.changed,
            "apply": pending.apply,
        }
        deadline = time.monotonic() + pending.remaining_now()
        self._store_alarm(CHANGED_CODE, rid, detail)
        while time.monotonic() < deadline:
            try:
                if uplink.stats.messages > acked_before or store.is_published("alarm", rid):
                    files.confirm(self.path, pending)
                    self._pending = None
                    log.info("config_confirmed", command_id=pending.command_id)
                    return
            except (StoreError, OSError):
                self._failed("config_confirm_check_failed")
            await asyncio.sleep(CONFIRM_POLL_S)
        reason = f"platform not reached within {pending.window_s} s"
        retry = Retry(REVERT_RETRY_MIN_S, REVERT_RETRY_MAX_S)
        while True:
            try:  # each step idempotent: a retry after a partial revert is safe
                files.revert(self.path, files.revert_note(pending, reason))
                break
            except OSError:
                delay = retry.next_delay()
                self._failed("config_revert_failed", retry_s=round(delay, 1))
            await asyncio.sleep(delay)
        log.warning("config_reverted", command_id=pending.command_id, reason=reason)
        self.collector.request_restart()

    # -- the commands ----------------------------------------------------------

    def register(self, processor: CommandProcessor) -> None:
        processor.register("config.set", self.config_set)
        processor.register("config.rollback", self.config_rollback)

    def _check_idle(self) -> None:
        from uplink.commands import CommandError

        if self._pending is not None or files.pending_path(self.path).exists():
            raise CommandError(
                CHANGE_PENDING, "a config change is waiting for confirmation; try after its window"
            )

    async def config_set(self, args: dict[str, Any]) -> dict[str, Any]:
        from uplink.commands import BAD_REQUEST, CommandError

        if unknown := sorted(set(args) - ARGS):
            raise CommandError(BAD_REQUEST, f"unknown arguments: {', '.join(unknown)}")
        window = confirm_window(args)
        async with self.file_lock:
            return await self._set(args, window)

    async def _set(self, args: dict[str, Any], window: int) -> dict[str, Any]:
        from collector.remote.config_plan import in_child
        from uplink.commands import CommandError

        self._check_idle()
        header = (
            f"Written by config.set {self._command_id()} at "
            f"{datetime.now().astimezone().isoformat(timespec='seconds')}; the file before it"
            f" is {self.path.name}.prev.\nEvery key: config/example.toml of the release."
        )
        running = self.collector.config.model_dump()
        answer = await in_child(
            "set", str(self.path), args.get("patch"), self.overrides, running, header
        )
        if answer[0] == "error":
            raise CommandError(answer[1], answer[2])
        _, new, text, changed = answer
        if not changed:
            return {"changed": [], "apply": "none"}
        check_fixed(changed)
        return await self._switch("set", new, text, changed, window)

    async def config_rollback(self, args: dict[str, Any]) -> dict[str, Any]:
        from uplink.commands import BAD_REQUEST, CommandError

        if unknown := sorted(set(args) - {"confirm_within_s"}):
            raise CommandError(BAD_REQUEST, f"unknown arguments: {', '.join(unknown)}")
        window = confirm_window(args)
        async with self.file_lock:
            return await self._rollback(window)

    async def _rollback(self, window: int) -> dict[str, Any]:
        from collector.remote.config_plan import in_child
        from uplink.commands import CommandError

        self._check_idle()
        previous = files.prev_path(self.path)
        if not previous.exists():
            raise CommandError(NO_PREVIOUS, f"{previous.name}: there is no previous config")
        running = self.collector.config.model_dump()
        answer = await in_child("rollback", str(previous), self.overrides, running)
        if answer[0] == "error":
            raise CommandError(answer[1], answer[2])
        _, new, text, changed = answer
        if not changed:  # the running config is the previous one (after a revert)
            return {"changed": [], "apply": "none"}
        check_fixed(changed)
        return await self._switch("rollback", new, text, changed, window)

    def _command_id(self) -> str:
        from uplink.commands import current_command_id

        return current_command_id.get() or "unknown"

    async def _switch(
        self, action: str, new: Config, text: bytes, changed: list[KeyPath], window: int
    ) -> dict[str, Any]:
        from config.patch import dotted
        from uplink.commands import CommandError

        keys = [dotted(path) for path in changed]
        apply = "live" if is_live(changed) else "restart"
        pending = files.Pending.new(self._command_id(), action, keys, apply, window, text)
        try:
            files.switch(self.path, text, pending)
        except OSError as exc:
            # Each step is atomic: before the rename the old file is in place
            # (a marker already written does not match it, so it goes); after
            # it (only the directory fsync failed) the change is in effect.
            if not files.in_effect(self.path, pending):
                self._failed("config_switch_failed")
                try:
                    files.drop_marker(self.path)
                except OSError:  # it does not match the file: the next start drops it
                    self._failed("config_marker_not_removed")
                reason = f"{self.path.name}: {exc.strerror or exc}"
                raise CommandError(WRITE_FAILED, reason) from None
            self._failed("config_switch_incomplete")
        log.info("config_switched", action=action, changed=keys, apply=apply, window_s=window)
        if apply == "live":
            self._apply_live(new)
            self._arm(pending)
        else:
            self._restart_after_reply()
        return {
            "changed": keys,
            "apply": apply,
            "confirm_within_s": window,
            "confirm_by_ms": pending.started_wall_ms + window * 1000,
        }

    def _apply_live(self, new: Config) -> None:
        c = self.collector
        c.config = new
        if c.uplink is not None:
            c.uplink.settings = dataclasses.replace(
                c.uplink.settings, heartbeat_s=new.uplink.heartbeat_s
            )
        from collector.station.edge import EdgeSettings

        edge = EdgeSettings.from_config(new)
        for port in c.ports:
            port.sink.edge = edge
        c.clock.step_threshold_ms = new.clock.step_threshold_ms
        c.clock.alarm_threshold_ms = new.clock.alarm_threshold_ms

    def _restart_after_reply(self) -> None:
        from collector.remote.command_setup import restart_after_reply

        store = self.collector.store
        assert store is not None
        task = asyncio.get_running_loop().create_task(
            restart_after_reply(store, self.collector.request_restart)
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
