"""The command channel: ``down/cmd`` subscribed beside publishing, never before it.

One :class:`CommandChannel` lives as long as the uplink; :meth:`run` is one
connection's part of it, a task in the session's task group beside the
sender: it subscribes when :class:`uplink.command_policy.CommandPolicy` says
the attempt is due, retries a refused SUBSCRIBE at the policy's backoff,
raises ``COMMAND_CHANNEL_DOWN`` when the channel stays down, and ends the
session (:class:`MoveForCommands`) when the policy moves to the next
endpoint. A refusal never ends publishing by itself: only a broker that
closes the connection over it does (RabbitMQ), and then the next
connection publishes at once and subscribes only when the backoff allows.

Incoming commands are queued (at most :data:`COMMAND_QUEUE_MAX`) for one
worker, which hands each to ``on_command`` (uplink/commands.py via
collector/remote/command_setup.py) one at a time.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiomqtt
import structlog

from uplink.command_policy import SUBSCRIBING, CommandPolicy, Move
from uplink.failover import LinkAlarm
from uplink.settings import UplinkStats
from uplink.transport import AckClock

log = structlog.get_logger("uplink")

#: Commands waiting for the command worker. The platform sends a few a day;
#: 16 absorbs a burst, and beyond that a flood is dropped (and counted) here
#: instead of growing memory: a dropped valid command is resent by the
#: platform (it gets no reply), a dropped forgery costs nothing.
COMMAND_QUEUE_MAX = 16

#: Seconds a SUBSCRIBE may wait for its SUBACK before it counts as refused
#: (the session's silence watch leaves a broker that answers nothing at all
#: sooner; this bounds a broker that answers PUBACKs but never this SUBACK).
SUBACK_TIMEOUT_S = 20.0

#: SUBACK return codes from this value up are failures (MQTT 3.1.1 §3.9.3: 0x80).
SUBACK_FAILURE = 0x80


class MoveForCommands(Exception):
    """Leave this endpoint: it refused the command subscription too often."""

    def __init__(self, move: Move) -> None:
        super().__init__(move.reason)
        self.move = move


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(eq=False)
class CommandChannel:
    policy: CommandPolicy
    topic: str
    emit: Callable[[list[LinkAlarm]], None]
    stats: UplinkStats
    #: The subscription's QoS: 1 with a persistent session; 0 with a clean
    #: one (docs/uplink-protocol.md "Session": nothing of it outlives the
    #: connection, and RabbitMQ keeps a QoS 1 subscription's queue durable,
    #: on one node, even for a clean session).
    qos: int = field(kw_only=True)
    _on_command: Callable[[bytes], Awaitable[None]] | None = field(init=False, default=None)
    dropped: int = field(init=False, default=0)
    _queue: asyncio.Queue[bytes] = field(
        init=False, default_factory=lambda: asyncio.Queue(COMMAND_QUEUE_MAX)
    )

    @property
    def on_command(self) -> Callable[[bytes], Awaitable[None]] | None:
        """Set by the daemon to accept down/cmd (uplink/commands.py): called with
        each payload, one at a time, by :meth:`worker`. Set: commands are on."""
        return self._on_command

    @on_command.setter
    def on_command(self, handler: Callable[[bytes], Awaitable[None]] | None) -> None:
        self._on_command = handler
        self.policy.enable(handler is not None)

    @property
    def subscribing(self) -> bool:
        """A SUBSCRIBE waits for its SUBACK (a connection closed now refused it)."""
        return self.policy.state == SUBSCRIBING

    async def run(self, client: aiomqtt.Client, endpoint: int, acks: AckClock) -> None:
        """This connection's command channel; returns once subscribed."""
        policy = self.policy
        policy.connected(time.monotonic(), _now_ms(), endpoint)
        while True:
            await self._wait_attempt()
            policy.subscribing(_now_ms())
            try:
                granted = await acks.answer(
                    client.subscribe(self.topic, qos=self.qos, timeout=math.inf), SUBACK_TIMEOUT_S
                )
            except aiomqtt.MqttError as exc:  # no SUBACK in time, other answers came
                move = self._refused(f"no SUBACK: {exc}")
            else:
                codes = [getattr(c, "value", c) for c in granted]
                if all(isinstance(c, int) and c < SUBACK_FAILURE for c in codes):
                    self.emit(policy.subscribed_now(time.monotonic(), _now_ms()))
                    self.stats.recovered("commands")
                    log.info("commands_subscribed", topic=self.topic)
                    return
                refused = ", ".join(f"0x{c:02x}" if isinstance(c, int) else str(c) for c in codes)
                move = self._refused(f"SUBACK refused: {refused}")
            if move is not None:
                raise MoveForCommands(move)

    async def poll(
        self, fetch: Callable[[], Awaitable[list[bytes]]], endpoint: int, every_s: float
    ) -> None:
        """This HTTP session's command channel: ``fetch`` (the command URL,
        uplink/http_link.py) every ``every_s`` — MQTT's subscription where only
        HTTP is up. A poll the platform answers without commands is a refusal
        (the same backoff, moves and alarm as a refused SUBSCRIBE); the first
        poll answered is the channel up (``subscribed``). A broken connection
        ends the session like any request's."""
        from uplink.http_link import CommandsRefused  # only with an HTTP endpoint

        policy = self.policy
        policy.connected(time.monotonic(), _now_ms(), endpoint)
        while True:
            await self._wait_attempt()
            if not policy.subscribed:
                policy.subscribing(_now_ms())
            try:
                found = await fetch()
            except CommandsRefused as exc:
                move = self._refused(f"command poll: {exc}")
                if move is not None:
                    raise MoveForCommands(move) from None
                continue
            if not policy.subscribed:
                self.emit(policy.subscribed_now(time.monotonic(), _now_ms()))
                self.stats.recovered("commands")
                log.info("commands_polling", every_s=every_s)
            for payload in found:
                self.put(payload)
            await asyncio.sleep(every_s)

    def lost_while_subscribing(self, error: str) -> Move | None:
        """The connection closed under a SUBSCRIBE: the broker's refusal."""
        return self._refused(f"connection closed on SUBSCRIBE: {error}")

    def _refused(self, reason: str) -> Move | None:
        move = self.policy.refused(time.monotonic(), _now_ms(), reason)
        retry_in = self.policy.attempt_in(time.monotonic())
        log.warning("commands_refused", reason=reason, retry_in_s=round(retry_in, 1))
        self.stats.note_error("commands", reason)
        if move is not None:
            log.warning("commands_move", to=self.policy.names[move.index], reason=move.reason)
        return move

    async def _wait_attempt(self) -> None:
        """Until the next SUBSCRIBE is due, raising COMMAND_CHANNEL_DOWN if
        it falls due meanwhile; a pending move ends the session."""
        policy = self.policy
        while (due := policy.attempt_in(time.monotonic())) > 0:
            alarm_due = policy.alarm_in(time.monotonic())
            await asyncio.sleep(min(due, alarm_due, 3600.0))
            self.emit(policy.check_alarm(time.monotonic(), _now_ms()))
        self.emit(policy.check_alarm(time.monotonic(), _now_ms()))

    def queue(self, message: aiomqtt.Message) -> None:
        if self.on_command is None or not message.topic.matches(self.topic):
            return
        payload: Any = message.payload
        if not isinstance(payload, bytes | bytearray):
            payload = str(payload).encode("utf-8")
        self.put(bytes(payload))

    def put(self, payload: bytes) -> None:
        """One sealed command for the worker (dropped and counted when full)."""
        if self.on_command is None:
            return
        try:
            self._queue.put_nowait(payload)
        except asyncio.QueueFull:
            self.dropped += 1

    async def worker(self) -> None:
        assert self.on_command is not None
        while True:
            payload = await self._queue.get()
            try:
                await self.on_command(payload)
            except Exception:  # a command bug never ends the session
                self.stats.count_error("command")
                log.exception("command_failed")
