"""Wire platform commands into the daemon: keys, replay log, handlers.

Called by the daemon after the uplink exists. Commands are on only when the
config names both the device SM2 key file and the platform public key file.
Replies are stored first (kind ``reply``, one record per command) and the
uplink publishes them like any other kind: ``{"items": [...]}`` on
``up/reply`` (docs/uplink-protocol.md "Commands").
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from collector.logs import Repeats
from collector.parts import StartError

if TYPE_CHECKING:
    from buffer.commits import NewRecord, Outcome
    from buffer.store import OrderStore
    from collector.device.clock import ClockSync
    from config.models import Config
    from uplink.commands import CommandProcessor
    from uplink.mqtt import Uplink

log = structlog.get_logger("commands")

#: Refused commands by code (forged, expired, junk on the topic, over the
#: rate …): once a minute in full per code plus one summary (collector/logs.py).
REFUSED = Repeats(log, "command_refused", source_field=None)


def log_refusal(code: str, command_id: str | None, message: str, answered: bool) -> None:
    """The processor's ``on_refused``: counted, and logged a few lines a minute."""
    REFUSED.add(code, id=command_id, message=message, answered=answered)


def replay_log_path(store_path: Path) -> Path:
    """The seen-ids file beside the store: ``<store>.commands.sqlite``."""
    return store_path.with_name(store_path.name + ".commands.sqlite")


def setup_commands(
    config: Config,
    store: OrderStore,
    uplink: Uplink,
    keys: Mapping[str, bytes],
    clock: ClockSync | None = None,
    restart: Callable[[], None] | None = None,
    running: Callable[[], Config] | None = None,
) -> CommandProcessor | None:
    """A ready processor attached to ``uplink``, or None when commands are off."""
    from uplink.commands import CommandProcessor, ReplayLog
    from uplink.device_commands import (
        KeyRing,
        register_device_commands,
        register_order_commands,
    )
    from uplink.keys import KeyFileError, load_sm2_pair, load_sm2_public, redact

    u = config.uplink
    if u.device_key_file is None and u.platform_public_key_file is None:
        return None
    if u.device_key_file is None or u.platform_public_key_file is None:
        raise StartError(
            "uplink: set both device_key_file and platform_public_key_file (commands), or neither"
        )
    try:
        device_private, _ = load_sm2_pair(u.device_key_file)
    except KeyFileError as exc:
        raise StartError(f"uplink.device_key_file: {exc}") from None
    try:
        platform_public = load_sm2_public(u.platform_public_key_file)
    except KeyFileError as exc:
        raise StartError(f"uplink.platform_public_key_file: {exc}") from None
    live = dict(keys)
    ring = KeyRing(u.keys_file, live, KeyRing.current_kid(u.keys_file, u.kid, live))

    def sealing_key_changed() -> None:
        uplink.settings = dataclasses.replace(
            uplink.settings, kid=ring.current, key=ring.current_key
        )
        log.info("sealing_key", kid=ring.current, fingerprint=redact(ring.current_key))

    if ring.current != u.kid:
        sealing_key_changed()
    try:
        replay = ReplayLog(replay_log_path(config.store.path))
    except Exception as exc:  # sqlite3.Error or OSError: one start-up line either way
        raise StartError(f"store.path: {replay_log_path(config.store.path)}: {exc}") from None
    processor = CommandProcessor(
        device_id=config.device.id,
        platform_public=platform_public,
        keys=live,
        replay=replay,
        on_refused=log_refusal,
    )
    from collector.ota.fit import device_tags

    bundle_fit = device_tags()

    def status() -> dict[str, Any]:
        # The heartbeat body, plus which release bundles fit this device
        # (platform and python tags, collector/ota/fit.py): the heartbeat's
        # own fields are fixed by the platform's contract, a reply's are not.
        return {**uplink.heartbeat(), "bundle": bundle_fit}

    register_device_commands(processor, status=status, ring=ring, device_private=device_private)
    register_order_commands(processor, resend=uplink.resend)
    if clock is not None:
        register_time_sync(processor, clock, store, config, uplink.wake)
    if restart is not None:
        register_restart(processor, restart, store)
    register_config_get(processor, running or config)

    async def on_command(payload: bytes) -> None:
        previous = ring.current
        reply = await processor.handle(payload)
        if ring.current != previous:
            sealing_key_changed()
        if reply is None:
            return  # dropped, counted and logged by log_refusal
        if reply["ok"]:
            log.info("command", id=reply["id"], ok=True)
        store_reply(store, uplink, reply)

    uplink.on_command = on_command
    return processor


def reply_record(reply: dict[str, Any]) -> NewRecord:
    """A command reply as a record (kind ``reply``; its own rid, as a command
    may reply more than once: ``ota.upgrade``'s stages)."""
    from buffer.commits import NewRecord

    rid = f"{reply['id'] or 'unknown'}:{time.time_ns() // 1_000_000}:{uuid.uuid4().hex[:8]}"
    return NewRecord("reply", rid, reply)


def store_reply(store: OrderStore, uplink: Uplink, reply: dict[str, Any]) -> bool:
    """A command reply stored first (handed to the store's writer: committed in
    order, retried while the store refuses), then published. False: not taken
    (the writer's queue is full during a long store fault; logged)."""
    record = reply_record(reply)

    def decided(outcome: Outcome) -> None:
        if outcome.kept:
            uplink.wake()
        else:
            log.error("reply_not_stored", id=reply["id"], error=outcome.detail)

    if store.writer.submit(record, decided):
        return True
    log.error("reply_not_taken", id=reply["id"])
    return False


def register_time_sync(
    processor: CommandProcessor,
    clock: ClockSync,
    store: OrderStore,
    config: Config,
    on_commit: Callable[[], None],
) -> None:
    """``time.sync`` (SPEC D16): measure, step beyond the threshold, RTC, CLOCK_DRIFT."""
    import asyncio

    from collector.station.alarm_store import store_alarm
    from uplink.commands import BAD_REQUEST, CommandError

    async def time_sync(args: dict[str, Any]) -> dict[str, Any]:
        platform_ts = args.get("platform_ts")
        if not isinstance(platform_ts, int) or isinstance(platform_ts, bool) or platform_ts < 0:
            raise CommandError(BAD_REQUEST, "platform_ts must be epoch milliseconds")
        try:
            # In a thread: the clock helper and hwclock take seconds on a
            # slow gateway, which the event loop (and its watchdog) must not wait.
            result = await asyncio.to_thread(clock.sync, platform_ts)
        except OSError as exc:  # no helper and no CAP_SYS_TIME, the helper refused
            raise CommandError("CLOCK_NOT_SET", f"cannot step the clock: {exc}") from None
        log.info("time_sync", **result.reply())
        if result.drift_alarm:
            detail = {"offset_ms": result.offset_ms, "stepped": result.stepped}
            tz = config.device.tzinfo
            store_alarm(store, "device", "CLOCK_DRIFT", True, tz, detail, wake=on_commit)
        return result.reply()

    processor.register("time.sync", time_sync)


#: ``device.restart`` waits this long for its own reply to be acknowledged
#: before stopping: the platform learns the command was taken.
RESTART_REPLY_WAIT_S = 5.0


async def restart_after_reply(store: OrderStore, restart: Callable[[], None]) -> None:
    """Wait (bounded) until no reply is unsent, then ``restart()``: the platform
    learns the command was taken (``device.restart``, a ``config.set`` that
    needs a restart)."""
    import asyncio

    deadline = time.monotonic() + RESTART_REPLY_WAIT_S
    await asyncio.sleep(0.05)  # the reply is handed to the writer once the handler returns
    while (store.writer.queued or store.unsent_counts().get("reply", 0)) and (
        time.monotonic() < deadline
    ):
        await asyncio.sleep(0.1)
    log.warning("restart_requested")
    restart()


def register_restart(
    processor: CommandProcessor, restart: Callable[[], None], store: OrderStore
) -> None:
    """``device.restart``: reply, then stop cleanly and let systemd start us again."""
    import asyncio

    pending: set[asyncio.Task[None]] = set()

    async def device_restart(args: dict[str, Any]) -> dict[str, Any]:
        task = asyncio.get_running_loop().create_task(restart_after_reply(store, restart))
        pending.add(task)  # keep a reference until it runs
        task.add_done_callback(pending.discard)
        return {"restarting": True, "within_s": int(RESTART_REPLY_WAIT_S)}

    processor.register("device.restart", device_restart)


def _decimal_strings(value: Any) -> Any:
    """Floats as decimal strings: replies are canonical JSON, which has no floats
    (platform-interface.md: numbers that are not integers travel as strings)."""
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, dict):
        return {k: _decimal_strings(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decimal_strings(v) for v in value]
    return value


def register_config_get(processor: CommandProcessor, config: Config | Callable[[], Config]) -> None:
    """``config.get``: the running config, every secret redacted (D8, D9);
    ``config`` may be a getter, so a live ``config.set`` shows at once."""
    from config.view import dump_redacted  # the daemon's views: no pydantic

    async def config_get(args: dict[str, Any]) -> dict[str, Any]:
        running = config() if callable(config) else config
        return {"config": _decimal_strings(dump_redacted(running))}

    processor.register("config.get", config_get)
