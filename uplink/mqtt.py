"""The MQTT uplink: publish what the store holds, mark it sent on PUBACK.

platform-interface.md v1: client id = device id, a clean session (or the
contract's persistent one: docs/uplink-protocol.md "Session"), a retained
last will ``{"online": false}`` on ``…/state`` and a retained
``{"online": true, …}`` on every connect; data records in sealed envelopes
on ``…/up/{kind}``; heartbeats (QoS 0) on ``…/up/heartbeat``.

Nothing here holds the only copy of anything. The sender reads unsent
records from the store in publish order, seals a batch per message, and
marks the batch sent in one store transaction after the broker's PUBACK.
A lost connection drops every in-flight batch on the floor — they are still
unsent in the store and go out again, in the same order, after reconnect.

aiomqtt 2.x does not reconnect by itself, so :meth:`Uplink.run` wraps each
connection in a loop with exponential backoff and full jitter, over an
ordered list of endpoints (SPEC D18): uplink/failover.py decides which one
and when to go back to the primary, uplink/links.py binds and probes.

Everything a connection does runs side by side from the moment it is up:
publishing from the store never waits for the command channel
(uplink/command_channel.py), and a closed or silent connection is seen
from the transport (uplink/transport.py), not from an operation timeout.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import aiomqtt
import structlog

from buffer.store import OrderStore, StoredRecord, StoreError
from config import testpoints
from uplink import links, session, status, transport
from uplink.batching import PAGE_BATCHES, BatchLink, batches
from uplink.command_channel import CommandChannel, MoveForCommands
from uplink.command_policy import CommandPolicy
from uplink.envelope import seal
from uplink.failover import HEALTHY_AFTER_S, Backoff, Endpoint, FailoverPolicy, LinkAlarm
from uplink.session import PUBLISH_TIMEOUT_S, BackToPrimary
from uplink.settings import UplinkSettings, UplinkStats
from uplink.transport import AckClock, LinkClosed

__all__ = [
    "PAGE_BATCHES",
    "Backoff",
    "Endpoint",
    "Uplink",
    "UplinkSettings",
    "UplinkStats",
    "batches",
]

_RESENT_TRUE = '"resent":true'
_RESENT_FALSE = '"resent":false'

log = structlog.get_logger("uplink")

#: What ends a session and is handled as a lost link: back off, try again. A
#: store that cannot be read or marked (disk full, locked) is one too: it
#: never takes the ports down with it.
_EXPECTED = (aiomqtt.MqttError, OSError, StoreError, BackToPrimary, MoveForCommands)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class Uplink:
    def __init__(
        self,
        settings: UplinkSettings,
        store: OrderStore,
        heartbeat: Callable[[], dict[str, Any]],
    ) -> None:
        self.settings = settings
        self.store = store
        self.heartbeat = heartbeat
        self.stats = UplinkStats()
        self._wake = asyncio.Event()
        #: Set by the daemon to store the link alarms (UPLINK_FAILOVER,
        #: NETWORK_LOSS, COMMAND_CHANNEL_DOWN): called with (code, raised,
        #: detail); store first.
        self.on_alarm: Callable[[str, bool, dict[str, Any]], None] | None = None
        endpoints = settings.endpoint_list()
        now = time.monotonic()
        self.failover = FailoverPolicy(
            endpoints,
            attempts_per_endpoint=settings.attempts_per_endpoint,
            probe_every_s=settings.probe_primary_s,
            network_loss_after_s=settings.network_loss_after_s,
            now=now,
        )
        policy = CommandPolicy(
            [e.name for e in endpoints],
            enabled=False,
            refusals_per_endpoint=settings.command_refusals_per_endpoint,
            retry_min_s=settings.reconnect_min_s,
            retry_max_s=settings.command_retry_max_s,
            alarm_after_s=settings.command_down_alarm_s,
            now=now,
            now_ms=_now_ms(),
        )
        self.commands = CommandChannel(
            policy,
            settings.topic("down/cmd"),
            self._emit,
            self.stats,
            qos=0 if settings.clean_session else 1,
        )
        self.acks = AckClock(settings.ack_timeout_s)

    @property
    def on_command(self) -> Callable[[bytes], Awaitable[None]] | None:
        """Set by the daemon to accept down/cmd (uplink/commands.py); unset:
        commands are off and nothing is subscribed."""
        return self.commands.on_command

    @on_command.setter
    def on_command(self, handler: Callable[[bytes], Awaitable[None]] | None) -> None:
        self.commands.on_command = handler

    def wake(self) -> None:
        """Something new is committed: look at the store again."""
        self._wake.set()

    def resend(self, **selection: Any) -> int:
        """``orders.resend`` (platform-interface.md): mark the selected stored
        orders for sending again with ``resent: true`` and wake the sender.
        Arguments as :meth:`buffer.store.OrderStore.request_resend`."""
        n = self.store.request_resend(**selection)
        self.wake()
        return n

    def link(self) -> dict[str, Any]:
        """The heartbeat's ``link`` (uplink/status.py)."""
        return status.link(self.failover, self.stats, self.commands)

    def status(self) -> dict[str, Any]:
        """Publishing and the command channel, separately (uplink/status.py)."""
        return status.full(self.stats, self.acks, self.commands)

    async def run(self) -> None:
        policy = self.failover
        backoff = Backoff(self.settings.reconnect_min_s, self.settings.reconnect_max_s)
        while True:
            endpoint = policy.target
            started = time.monotonic()
            self.stats.connected = False
            error: BaseException | None = None
            try:
                await self._session(endpoint)
            except _EXPECTED as exc:
                error = exc
            except ExceptionGroup as group:
                link_errors, rest = group.split(_EXPECTED)
                if rest is not None:
                    error = self._crashed(rest)
                else:
                    assert link_errors is not None
                    error = session.cause(link_errors, MoveForCommands)
            except Exception as exc:
                error = self._crashed(exc)
            was_up = self.stats.connected
            self.stats.connected = False
            now = time.monotonic()
            if was_up and now - started > HEALTHY_AFTER_S:
                backoff.reset()
            if self._left_for_commands(error, was_up, now):
                await asyncio.sleep(backoff.first_delay())
                continue
            if isinstance(error, BackToPrimary):
                policy.leave_for_primary(now)
                log.info("uplink_return", to=policy.primary.name)
                await asyncio.sleep(backoff.first_delay())
                continue
            self._down(error, endpoint)
            link_down = endpoint.interface is not None and links.interface_down(endpoint.interface)
            reason = "interface down" if link_down else str(error)
            if was_up:
                moved = policy.lost(now, reason, link_down=link_down)
            else:
                moved = policy.failed(now, reason, link_down=link_down)
            # A new endpoint is tried promptly; once all have failed, the
            # backoff grows whichever one is next (a total outage stays bounded).
            fresh = moved and policy.fresh_target
            delay = backoff.first_delay() if fresh else backoff.next_delay()
            log.info("uplink_retry", in_s=round(delay, 2), endpoint=policy.target.name)
            await self._wait_retry(delay)

    def _left_for_commands(self, error: BaseException | None, was_up: bool, now: float) -> bool:
        """A session the command channel ended — its move, or the broker closing
        the connection over a SUBSCRIBE — is no link failure: True when handled."""
        channel = self.commands
        move = None
        if isinstance(error, MoveForCommands):
            move = error.move
        elif was_up and channel.subscribing and isinstance(error, LinkClosed):
            move = channel.lost_while_subscribing(str(error))
        else:
            channel.policy.disconnected(now, _now_ms())
            return False
        channel.policy.disconnected(now, _now_ms())
        if move is not None:
            self.failover.move_to(now, move.index, move.reason)
            log.info("uplink_move", to=self.failover.target.name, reason=move.reason)
        else:
            self.failover.interrupted(now)
            log.info("uplink_reconnect", endpoint=self.failover.target.name, reason=str(error))
        return True

    async def _wait_retry(self, delay: float) -> None:
        """Sleep ``delay``, raising NETWORK_LOSS (F1) when it falls due meanwhile."""
        until = time.monotonic() + delay
        while (left := until - time.monotonic()) > 0:
            await asyncio.sleep(min(left, self.failover.loss_in(time.monotonic())))
            self._emit(self.failover.check_loss(time.monotonic(), _now_ms()))

    def _emit(self, alarms: list[LinkAlarm]) -> None:
        for alarm in alarms:
            log.warning("link_alarm", code=alarm.code, raised=alarm.raised, **alarm.detail)
            if self.on_alarm is not None:
                try:
                    self.on_alarm(alarm.code, alarm.raised, alarm.detail)
                except StoreError as exc:  # the store's own alarm says why
                    log.error("record_not_stored", kind="alarm", code=alarm.code, exc_info=exc)
                    self.stats.alarms_not_stored += 1
                    # Emitted again at the policy's next transition point.
                    self.failover.undo(alarm)
                    self.commands.policy.undo(alarm)
        if alarms:
            self.wake()

    def _crashed(self, exc: Exception) -> Exception:
        """A bug ended the session (not the link, not the store): logged with
        its traceback and counted; the session starts over like after a lost
        link, and the ports, which never wait for the uplink, go on."""
        self.stats.count_error("session")
        log.error("uplink_failed", exc_info=exc)
        return exc

    def _down(self, exc: BaseException | None, endpoint: Endpoint) -> None:
        self.stats.note_error("link", f"{endpoint.name}: {exc}")
        # A lost or refused link is the uplink's daily weather: one line. A
        # traceback only for what is not (a crash was logged with it already).
        ordinary = isinstance(exc, _EXPECTED)
        trace = {} if ordinary or exc is None else {"exc_info": exc}
        log.warning("uplink_down", endpoint=endpoint.name, error=str(exc), **trace)

    async def _session(self, endpoint: Endpoint) -> None:
        if endpoint.http:  # the second road (SPEC D3): h11 is loaded only for it
            from uplink import http_session

            await http_session.run(self, endpoint)
            return
        client = session.make_client(self.settings, endpoint)
        try:
            async with client:
                self._connected(endpoint)
                try:
                    # Side by side from the first moment: a closed or silent
                    # connection ends all of it at once; nothing here waits
                    # for the command channel.
                    async with asyncio.TaskGroup() as tg:
                        tg.create_task(session.watch_incoming(client, self.commands.queue))
                        tg.create_task(self.acks.watch())
                        tg.create_task(session.announce(client, self.settings, self.acks))
                        tg.create_task(self._heartbeats(client))
                        link = session.MqttLink(client, self.settings, self.acks)
                        tg.create_task(self._sender(link, tg))
                        if self.commands.policy.enabled:
                            index = self.failover.index
                            tg.create_task(self.commands.run(client, index, self.acks))
                            tg.create_task(self.commands.worker())
                        if endpoint.interface is not None:
                            tg.create_task(session.watch_interface(endpoint.interface))
                        if self.failover.on_backup:
                            tg.create_task(session.probe_primary(self.failover))
                except asyncio.CancelledError:
                    await session.offline_notice(client, self.settings)
                    raise
        finally:
            transport.settle(client)

    def _connected(self, endpoint: Endpoint) -> None:
        self.acks = AckClock(
            self.settings.ack_timeout_s,
            last_answer_ms=self.acks.last_answer_ms,
            on_answer=self.commands.policy.alive,
        )
        self.stats.connected = True
        self.stats.connected_since_ms = _now_ms()
        self.stats.connects += 1
        self.stats.recovered("link")
        log.info(
            "uplink_connected",
            endpoint=endpoint.name,
            host=endpoint.host,
            port=endpoint.port,
            interface=endpoint.interface,
        )
        self._emit(self.failover.connected(time.monotonic()) + self.commands.policy.off_clear())

    async def _heartbeats(self, client: aiomqtt.Client) -> None:
        while True:
            try:
                body = self.heartbeat()
                payload = self._seal(body, "heartbeat")
                await transport.bounded(
                    client.publish(
                        self.settings.topic("up/heartbeat"), payload, qos=0, timeout=math.inf
                    ),
                    PUBLISH_TIMEOUT_S,
                )
            except Exception:
                # A heartbeat is a snapshot: a missed one (slow 4G link, a busy
                # store) must not tear down the session and its in-flight batches.
                # A lost link is noticed by the transport, the silence watch and keepalive.
                self.stats.count_error("heartbeat")
                log.warning("heartbeat_skipped", exc_info=True)
            await asyncio.sleep(self.settings.heartbeat_s)

    async def _sender(self, link: BatchLink, tg: asyncio.TaskGroup) -> None:
        # Backpressure: the store is read one page (PAGE_BATCHES x
        # batch_max_records) at a time and at most max_inflight batches await their PUBACK, so a
        # broker gone for hours costs no memory here — the backlog stays on flash
        # and collection (ports committing) never waits for this task.
        inflight = asyncio.Semaphore(self.settings.max_inflight)
        cursor = 0  # last record id handed to a publish in this session
        epoch = self.store.resend_epoch
        publishing: dict[int, int] = {}  # id -> resend generation awaiting its PUBACK
        while True:
            self._wake.clear()
            if self.store.resend_epoch != epoch:
                # orders.resend made older records unsent again: read from the
                # start (in id order, so per-nozzle order holds for them too),
                # skipping the copies still in flight.
                epoch, cursor = self.store.resend_epoch, 0
            records = self.store.unsent_page(cursor, PAGE_BATCHES * self.settings.batch_max_records)
            if not records:
                await self._wake.wait()
                continue
            cursor = records[-1].id
            fresh = [r for r in records if publishing.get(r.id) != r.resent]
            for run in batches(fresh, self.settings.batch_max_records):
                await inflight.acquire()
                publishing.update((r.id, r.resent) for r in run)
                tg.create_task(self._publish_batch(link, run, inflight, publishing))

    async def _publish_batch(
        self,
        link: BatchLink,
        run: list[StoredRecord],
        inflight: asyncio.Semaphore,
        publishing: dict[int, int],
    ) -> None:
        try:
            kind = run[0].kind
            payload = self._seal_texts(run, kind)
            await link.deliver(kind, payload)
            self.stats.last_puback_ms = self.acks.last_answer_ms
            if testpoints.active:
                testpoints.reached("batch_acked", kind)
            # PUBACK received: only now are these copies sent — one transaction.
            self.store.mark_published(run)
            if testpoints.active:
                testpoints.passed("batch_acked")
            self.stats.messages += 1
            self.stats.records += len(run)
            self.stats.bytes += len(payload)
            log.debug("published", kind=kind, records=len(run), bytes=len(payload))
        finally:
            for r in run:
                if publishing.get(r.id) == r.resent:
                    del publishing[r.id]
            inflight.release()

    def _seal_texts(self, run: list[StoredRecord], kind: str) -> bytes:
        """``{"items":[…]}`` spliced from the stored canonical texts, each with
        ``resent`` appended (a transport field, outside the chain hash —
        records/chain.py HASH_EXCLUDED — and never stored, so never doubled).
        The plaintext need not be canonical (platform-interface.md: UTF-8 JSON)."""
        if any(r.text is None for r in run):  # a record not from unsent_page: a bug
            raise StoreError("uplink: record without stored text")
        items = ",".join(
            f"{str(r.text)[:-1]},{_RESENT_TRUE if r.resent else _RESENT_FALSE}}}" for r in run
        )
        return self._seal(f'{{"items":[{items}]}}'.encode(), kind)

    def _seal(self, body: Mapping[str, Any] | bytes, kind: str) -> bytes:
        """``body`` sealed as the next envelope of ``kind`` (a heartbeat not deflated)."""
        s = self.settings
        return seal(
            body,
            dev=s.device_id,
            kid=s.kid,
            key=s.key,
            seq=self.store.next_seq(),
            ts_ms=time.time_ns() // 1_000_000,
            type=kind,
            zip=s.zip if kind != "heartbeat" else "none",
        )
