"""The MQTT uplink: publish what the store holds, mark it sent on PUBACK.

platform-interface.md v1: client id = device id, persistent session, a
retained last will ``{"online": false}`` on ``…/state`` and a retained
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
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiomqtt
import structlog

from buffer.store import OrderStore, StoredRecord, StoreError
from config import testpoints
from uplink import links
from uplink.batching import PAGE_BATCHES, batches
from uplink.envelope import seal, seal_plaintext
from uplink.failover import Backoff, Endpoint, FailoverPolicy, LinkAlarm
from uplink.settings import UplinkSettings, UplinkStats

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

#: Seconds to wait for a PUBACK before treating the link as dead. Keepalive
#: (60 s) would notice too, but a wedged link should not hold a batch that long.
PUBLISH_TIMEOUT_S = 20.0


async def _bounded(call: Awaitable[object], timeout_s: float) -> None:
    """An aiomqtt publish or subscribe (given ``timeout=math.inf``) within
    ``timeout_s``. aiomqtt's own timeout is ``asyncio.wait_for``, which on
    Python 3.11 can swallow a cancel landing as the call completes: a task
    then runs on after a stop and the session never ends (the daemon ignored
    SIGTERM). ``asyncio.timeout`` never does."""
    try:
        async with asyncio.timeout(timeout_s):
            await call
    except TimeoutError:
        raise aiomqtt.MqttError("Operation timed out") from None


#: Seconds allowed for the TCP + MQTT handshake over a slow 4G link.
CONNECT_TIMEOUT_S = 15.0

#: Seconds a clean stop waits to tell the platform it goes offline.
OFFLINE_NOTICE_S = 2.0

#: A connection that lived this long was healthy: the backoff starts over.
HEALTHY_AFTER_S = 30.0

#: Seconds between two looks at the bound interface's state: reading one sysfs
#: file is cheap, and a pulled cable or a dead modem is then left within a
#: second instead of after keepalive (up to 1.5 x 60 s) or a publish timeout.
INTERFACE_CHECK_S = 1.0

#: Commands waiting for the command worker. The platform sends a few a day;
#: 16 absorbs a burst, and beyond that a flood is dropped (and counted) here
#: instead of growing memory: a dropped valid command is resent by the
#: platform (it gets no reply), a dropped forgery costs nothing.
COMMAND_QUEUE_MAX = 16


class _BackToPrimary(Exception):
    """The primary answered its probes: close the backup session cleanly."""


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
        #: Set by the daemon to accept down/cmd (uplink/commands.py): called with
        #: each payload, one at a time, by :meth:`_command_worker`.
        self.on_command: Callable[[bytes], Awaitable[None]] | None = None
        #: Set by the daemon to store the link alarms (UPLINK_FAILOVER,
        #: NETWORK_LOSS): called with (code, raised, detail); store first.
        self.on_alarm: Callable[[str, bool, dict[str, Any]], None] | None = None
        self.commands_dropped = 0
        self._commands: asyncio.Queue[bytes] = asyncio.Queue(COMMAND_QUEUE_MAX)
        self.failover = FailoverPolicy(
            settings.endpoint_list(),
            attempts_per_endpoint=settings.attempts_per_endpoint,
            probe_every_s=settings.probe_primary_s,
            network_loss_after_s=settings.network_loss_after_s,
            now=time.monotonic(),
        )

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
        """The heartbeat's ``link``: the endpoint in use (or being tried)."""
        endpoint = self.failover.target
        return {
            "name": endpoint.name,
            "endpoint": endpoint.address,
            "interface": endpoint.interface,
            "primary": self.failover.index == 0,
            "connected": self.stats.connected,
        }

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
            except (aiomqtt.MqttError, OSError, StoreError, _BackToPrimary) as exc:
                error = exc
            except ExceptionGroup as group:
                # A store that cannot be read or marked (disk full, locked) is
                # handled like a lost link: back off and try again; it never
                # takes the ports down with it.
                expected = (aiomqtt.MqttError, OSError, StoreError, _BackToPrimary)
                link_errors, rest = group.split(expected)
                if rest is not None:
                    error = self._crashed(rest)
                else:
                    assert link_errors is not None
                    back = link_errors.subgroup(_BackToPrimary)
                    error = (back or link_errors).exceptions[0]
            except Exception as exc:
                error = self._crashed(exc)
            was_up = self.stats.connected
            now = time.monotonic()
            if isinstance(error, _BackToPrimary):
                self.stats.connected = False
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
            if was_up and now - started > HEALTHY_AFTER_S:
                backoff.reset()
            # A new endpoint is tried promptly; once all have failed, the
            # backoff grows whichever one is next (a total outage stays bounded).
            fresh = moved and policy.fresh_target
            delay = backoff.first_delay() if fresh else backoff.next_delay()
            log.info("uplink_retry", in_s=round(delay, 2), endpoint=policy.target.name)
            await self._wait_retry(delay)

    async def _wait_retry(self, delay: float) -> None:
        """Sleep ``delay``, raising NETWORK_LOSS (F1) when it falls due meanwhile."""
        until = time.monotonic() + delay
        while (left := until - time.monotonic()) > 0:
            await asyncio.sleep(min(left, self.failover.loss_in(time.monotonic())))
            self._emit(self.failover.check_loss(time.monotonic(), time.time_ns() // 1_000_000))

    def _emit(self, alarms: list[LinkAlarm]) -> None:
        for alarm in alarms:
            log.warning("link_alarm", code=alarm.code, raised=alarm.raised, **alarm.detail)
            if self.on_alarm is not None:
                try:
                    self.on_alarm(alarm.code, alarm.raised, alarm.detail)
                except StoreError as exc:  # the store's own alarm says why
                    log.error("record_not_stored", kind="alarm", code=alarm.code, exc_info=exc)
                    self.stats.alarms_not_stored += 1
                    self.failover.undo(alarm)  # emitted again at the next transition point
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
        self.stats.connected = False
        self.stats.last_error = f"{endpoint.name}: {exc}"
        # A lost or refused link is the uplink's daily weather: one line. A
        # traceback only for what is not (a crash was logged with it already).
        ordinary = isinstance(exc, aiomqtt.MqttError | OSError | StoreError)
        trace = {} if ordinary or exc is None else {"exc_info": exc}
        log.warning("uplink_down", endpoint=endpoint.name, error=str(exc), **trace)

    async def _session(self, endpoint: Endpoint) -> None:
        s = self.settings
        will = aiomqtt.Will(s.topic("state"), json.dumps({"online": False}), qos=1, retain=True)
        client = aiomqtt.Client(
            endpoint.host,
            endpoint.port,
            identifier=s.device_id,
            clean_session=False,
            keepalive=s.keepalive_s,
            will=will,
            username=s.username,
            password=s.password,
            tls_params=aiomqtt.TLSParameters() if endpoint.tls else None,
            timeout=CONNECT_TIMEOUT_S,
        )
        if endpoint.interface is not None:
            links.bind_client(client, endpoint.interface, CONNECT_TIMEOUT_S)
        task = asyncio.current_task()
        # Cancels asked of this task so far: Python 3.11's TaskGroup can leave
        # the count raised after a failed session, so only a rise means "stop".
        asked = task.cancelling() if task is not None else 0
        async with client:
            self.stats.connected = True
            self.stats.connects += 1
            log.info(
                "uplink_connected",
                endpoint=endpoint.name,
                host=endpoint.host,
                port=endpoint.port,
                interface=endpoint.interface,
            )
            self._emit(self.failover.connected(time.monotonic()))
            online = {"online": True, "version": s.version, "ts": time.time_ns() // 1_000_000}
            await _bounded(
                client.publish(
                    s.topic("state"), json.dumps(online), qos=1, retain=True, timeout=math.inf
                ),
                PUBLISH_TIMEOUT_S,
            )
            await self._subscribe_commands(client)
            # The connect is aiomqtt's asyncio.wait_for too (see _bounded): a
            # stop asked meanwhile would start the session's tasks and never end.
            if task is not None and task.cancelling() > asked:
                raise asyncio.CancelledError
            try:
                async with asyncio.TaskGroup() as tg:
                    tg.create_task(self._watch(client))
                    tg.create_task(self._heartbeats(client))
                    tg.create_task(self._sender(client, tg))
                    if self.on_command is not None:
                        tg.create_task(self._command_worker())
                    if endpoint.interface is not None:
                        tg.create_task(self._watch_interface(endpoint.interface))
                    if self.failover.on_backup:
                        tg.create_task(self._probe_primary())
            except asyncio.CancelledError:
                # A clean stop sends DISCONNECT, which discards the last will:
                # say "offline" ourselves, or the platform keeps seeing "online".
                try:
                    async with asyncio.timeout(OFFLINE_NOTICE_S):
                        await client.publish(
                            s.topic("state"), json.dumps({"online": False}), qos=1, retain=True
                        )
                except Exception:  # stopping anyway; the retained will may say it later
                    log.warning("offline_notice_failed", exc_info=True)
                raise

    async def _watch_interface(self, interface: str) -> None:
        # A pulled cable or a dead modem is left at once: keepalive alone would
        # notice only after up to 1.5 keepalive periods.
        while not links.interface_down(interface):
            await asyncio.sleep(INTERFACE_CHECK_S)
        raise aiomqtt.MqttError(f"interface {interface} is down")

    async def _probe_primary(self) -> None:
        """On a backup: probe the primary (bound to its interface) until it
        has answered often enough, then end this session to go back."""
        policy, primary = self.failover, self.failover.primary
        while True:
            await asyncio.sleep(policy.probe_in(time.monotonic()))
            answered = await links.probe(primary.host, primary.port, primary.interface)
            log.info("primary_probed", endpoint=primary.name, answered=answered)
            if policy.probe_answered(time.monotonic(), answered):
                raise _BackToPrimary()

    async def _watch(self, client: aiomqtt.Client) -> None:
        # The message iterator is the one public place aiomqtt reports a lost
        # connection; raising here tears the session down and starts over.
        async for message in client.messages:
            self._queue_command(message)
        raise aiomqtt.MqttError("message stream ended")

    async def _subscribe_commands(self, client: aiomqtt.Client) -> None:
        """Subscribe to down/cmd on every connect (the persistent session keeps
        it too, but a broker that lost its state must not leave us deaf)."""
        if self.on_command is not None:
            await _bounded(
                client.subscribe(self.settings.topic("down/cmd"), qos=1, timeout=math.inf),
                PUBLISH_TIMEOUT_S,
            )
            log.info("commands_subscribed", topic=self.settings.topic("down/cmd"))

    def _queue_command(self, message: aiomqtt.Message) -> None:
        if self.on_command is None or not message.topic.matches(self.settings.topic("down/cmd")):
            return
        payload = message.payload
        if not isinstance(payload, bytes | bytearray):
            payload = str(payload).encode("utf-8")
        try:
            self._commands.put_nowait(bytes(payload))
        except asyncio.QueueFull:
            self.commands_dropped += 1

    async def _command_worker(self) -> None:
        assert self.on_command is not None
        while True:
            payload = await self._commands.get()
            try:
                await self.on_command(payload)
            except Exception:  # a command bug never ends the session
                self.stats.count_error("command")
                log.exception("command_failed")

    async def _heartbeats(self, client: aiomqtt.Client) -> None:
        while True:
            try:
                body = self.heartbeat()
                payload = self._seal(body, "heartbeat")
                await _bounded(
                    client.publish(
                        self.settings.topic("up/heartbeat"), payload, qos=0, timeout=math.inf
                    ),
                    PUBLISH_TIMEOUT_S,
                )
            except Exception:
                # A heartbeat is a snapshot: a missed one (slow 4G link, a busy
                # store) must not tear down the session and its in-flight batches.
                # A lost link is noticed by _watch and keepalive.
                self.stats.count_error("heartbeat")
                log.warning("heartbeat_skipped", exc_info=True)
            await asyncio.sleep(self.settings.heartbeat_s)

    async def _sender(self, client: aiomqtt.Client, tg: asyncio.TaskGroup) -> None:
        # Backpressure (issue #6): the store is read one page (PAGE_BATCHES x
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
                tg.create_task(self._publish_batch(client, run, inflight, publishing))

    async def _publish_batch(
        self,
        client: aiomqtt.Client,
        run: list[StoredRecord],
        inflight: asyncio.Semaphore,
        publishing: dict[int, int],
    ) -> None:
        try:
            kind = run[0].kind
            payload = self._seal_texts(run, kind)
            await _bounded(
                client.publish(self.settings.topic(f"up/{kind}"), payload, qos=1, timeout=math.inf),
                PUBLISH_TIMEOUT_S,
            )
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
        uplink/chain.py HASH_EXCLUDED — and never stored, so never doubled).
        The plaintext need not be canonical (platform-interface.md: UTF-8 JSON)."""
        if any(r.text is None for r in run):  # a record not from unsent_page: a bug
            raise StoreError("uplink: record without stored text")
        items = ",".join(
            f"{str(r.text)[:-1]},{_RESENT_TRUE if r.resent else _RESENT_FALSE}}}" for r in run
        )
        s = self.settings
        return seal_plaintext(
            f'{{"items":[{items}]}}'.encode(),
            dev=s.device_id,
            kid=s.kid,
            key=s.key,
            seq=self.store.next_seq(),
            ts_ms=time.time_ns() // 1_000_000,
            type=kind,
            zip=s.zip,
        )

    def _seal(self, body: dict[str, Any], kind: str) -> bytes:
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
