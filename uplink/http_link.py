"""The sender's way out over HTTP: sealed batches POSTed, marked on a sealed ack.

:class:`HttpLink` is the HTTP side of the seam uplink/batching.py
``BatchLink`` names: the uplink's one sender (uplink/mqtt.py ``_sender``,
shared with MQTT) seals each batch exactly as for MQTT and hands it to
:meth:`HttpLink.deliver`, which returns once the platform acknowledged that
envelope. Batches handed over while a request is out wait in a queue (at
most ``max_inflight`` of them, the sender's own bound) and go together in
the next POST, as one JSON array of envelopes in the order they were handed
over: one request at a time on one kept-alive connection, so the platform
receives them in store order (per nozzle in ``nseq`` order), as MQTT's
ordered topic gives it.

Retry (docs/uplink-protocol.md "HTTP transport"): a POST answered 408, 429
or 5xx, or answered with nothing believable (uplink/http_answer.py), goes
again with the **same bytes** — the platform is idempotent by ``seq`` — after
a backoff with jitter (``Retry-After`` honoured up to ``reconnect_max_s``),
at most :data:`REQUEST_TRIES` times; then, or at once for a refusal (another
4xx) or a broken connection, the session ends as a lost link and the
failover policy decides where to go (uplink/failover.py). A connection the
server closed while idle is replaced at once, once, without counting.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections import deque
from dataclasses import InitVar, dataclass, field

import structlog

from uplink.failover import Backoff, Endpoint
from uplink.http_answer import Outcome, read_answer
from uplink.http_client import Answer, HttpConnection, HttpFailed
from uplink.settings import UplinkSettings, UplinkStats
from uplink.transport import AckClock

log = structlog.get_logger("uplink")

#: Tries of one POST (the same bytes) before the session is given up.
REQUEST_TRIES = 3

#: The platform's answer to a POST: one sealed ack naming at most a few dozen
#: seqs is a few hundred bytes; 64 KiB is a generous bound.
MAX_ACK_BYTES = 64 * 1024

#: The command URL's answer: at most :data:`MAX_POLLED_COMMANDS` sealed
#: commands of at most 16 KiB each (uplink/commands.py's bound), and some.
MAX_POLLED_COMMANDS = 16
MAX_COMMANDS_BYTES = MAX_POLLED_COMMANDS * 16 * 1024 + 4096

JSON = "application/json"


class HttpLinkError(ConnectionError):
    """The HTTP link is given up for this session (a lost link for the failover)."""


class CommandsRefused(Exception):
    """The command URL answered, but not with commands (a refusal for the channel)."""


@dataclass(slots=True)
class _Queued:
    seq: int
    payload: bytes
    #: Resolved at the envelope's ack; None: a heartbeat, a snapshot never waited for.
    done: asyncio.Future[None] | None


def seq_of(payload: bytes) -> int:
    """The envelope's ``seq`` (the ack names envelopes by it)."""
    seq = json.loads(payload)["seq"]
    if not isinstance(seq, int):
        raise ValueError("envelope without an integer seq")
    return seq


@dataclass(eq=False, repr=False)
class HttpLink:
    connection: HttpConnection
    settings: UplinkSettings
    endpoint: InitVar[Endpoint]
    acks: AckClock
    stats: UplinkStats
    #: Requests, and POSTs sent again with the same bytes, this session.
    requests: int = field(init=False, default=0)
    retries: int = field(init=False, default=0)
    _queue: deque[_Queued] = field(init=False, default_factory=deque)
    _ready: asyncio.Event = field(init=False, default_factory=asyncio.Event)
    #: One request at a time on the connection.
    _lock: asyncio.Lock = field(init=False, default_factory=asyncio.Lock)

    def __post_init__(self, endpoint: Endpoint) -> None:
        settings = self.settings
        base = f"{endpoint.path}/{settings.device_id}"
        self.up_target, self.commands_target = f"{base}/up", f"{base}/down/cmd"
        self.max_envelopes = settings.max_inflight + 1  # the sender's bound, and a heartbeat
        self._headers = [("User-Agent", f"forecourt-collector/{settings.version}")]
        if settings.username is not None:
            secret = f"{settings.username}:{settings.password or ''}".encode()
            auth = "Basic " + base64.b64encode(secret).decode("ascii")
            self._headers.append(("Authorization", auth))

    # --- what the sender and the heartbeat hand over -------------------

    async def deliver(self, kind: str, payload: bytes) -> None:
        """Queue one sealed batch for the next POST (at once, before any
        wait: hand-over order is POST order) and return at its ack."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append(_Queued(seq_of(payload), payload, done))
        self._ready.set()
        await done

    def heartbeat(self, payload: bytes) -> None:
        """A sealed heartbeat rides with the next POST (or alone); an older one
        not yet sent is replaced: it is a snapshot."""
        for item in self._queue:
            if item.done is None:
                self._queue.remove(item)
                break
        self._queue.append(_Queued(seq_of(payload), payload, None))
        self._ready.set()

    # --- the POST loop -------------------------------------------------

    async def run(self) -> None:
        """POST what is queued, one request at a time, until the session ends."""
        try:
            while True:
                while not self._queue:
                    self._ready.clear()
                    await self._ready.wait()
                batch = [self._queue[i] for i in range(min(len(self._queue), self.max_envelopes))]
                outcome = await self._post(batch)
                for item in batch:
                    self._queue.popleft()
                    self._settle(item, outcome)
        finally:
            # The session ends: nothing queued is acked. The sender's tasks end
            # with it; a future still pending is cancelled, never left hanging.
            for item in self._queue:
                if item.done is not None and not item.done.done():
                    item.done.cancel()
            self._queue.clear()

    def _settle(self, item: _Queued, outcome: Outcome) -> None:
        if item.seq in outcome.acked:
            if item.done is not None and not item.done.done():
                item.done.set_result(None)
            return
        reason = outcome.rejected.get(item.seq, "not acknowledged")
        log.warning("http_envelope_rejected", seq=item.seq, reason=reason)
        self.stats.count_error("http_rejected")
        if item.done is not None and not item.done.done():
            # Its records stay unsent; the session ends and they go again
            # under a new seq (the platform deduplicates them by rid).
            item.done.set_exception(HttpLinkError(f"platform refused seq {item.seq}: {reason}"))

    async def _post(self, batch: list[_Queued]) -> Outcome:
        body = b"[" + b",".join(item.payload for item in batch) + b"]"
        seqs = [item.seq for item in batch]
        backoff = Backoff(self.settings.reconnect_min_s, self.settings.reconnect_max_s)
        for attempt in range(1, REQUEST_TRIES + 1):
            try:
                answer = await self._request("POST", self.up_target, body, MAX_ACK_BYTES)
            except HttpFailed:
                self.acks.given_up()
                raise
            outcome = read_answer(
                answer.status,
                answer.headers,
                answer.body,
                sent=seqs,
                dev=self.settings.device_id,
                keys={self.settings.kid: self.settings.key},
            )
            if outcome.answered:
                self.acks.answered(time.monotonic(), time.time_ns() // 1_000_000)
                return outcome
            self.acks.given_up()
            self.stats.count_error("http_unanswered")
            log.warning(
                "http_post_unanswered", why=outcome.failure, attempt=attempt, seqs=len(seqs)
            )
            if not outcome.retry or attempt == REQUEST_TRIES:
                raise HttpLinkError(f"POST {self.up_target}: {outcome.failure}")
            delay = backoff.next_delay()
            if outcome.retry_after_s is not None:
                delay = max(delay, min(outcome.retry_after_s, self.settings.reconnect_max_s))
            self.retries += 1
            await asyncio.sleep(delay)
        raise AssertionError("unreachable")  # the loop returns or raises

    async def _request(self, method: str, target: str, body: bytes, max_body: int) -> Answer:
        """One exchange; a kept-alive connection found closed under it is
        replaced once at once (the request is idempotent by seq, or a GET)."""
        headers = [*self._headers, ("Accept", JSON)]
        if body:
            headers.append(("Content-Type", JSON))
        async with self._lock:
            reused = self.connection.is_open
            if method == "POST":
                self.acks.sent(time.monotonic())
            self.requests += 1
            try:
                return await self.connection.request(
                    method,
                    target,
                    headers,
                    body,
                    timeout_s=self.settings.http_timeout_s,
                    max_body=max_body,
                )
            except HttpFailed as exc:
                if not reused:
                    raise
                log.info("http_reconnect", reason=str(exc))
            return await self.connection.request(
                method, target, headers, body, timeout_s=self.settings.http_timeout_s,
                max_body=max_body,
            )  # fmt: skip

    # --- commands ------------------------------------------------------

    async def fetch_commands(self) -> list[bytes]:
        """GET the command URL: the sealed commands the platform has for this
        device (``{"commands": [envelope, ...]}``, or 204), each as bytes for
        the command worker (uplink/commands.py checks every one)."""
        answer = await self._request("GET", self.commands_target, b"", MAX_COMMANDS_BYTES)
        if answer.status == 204:
            return []
        if answer.status != 200:
            raise CommandsRefused(f"HTTP {answer.status}")
        try:
            found = json.loads(answer.body)
        except ValueError:
            raise CommandsRefused("the answer is not JSON") from None
        listed = found.get("commands") if isinstance(found, dict) else None
        if not isinstance(listed, list):
            raise CommandsRefused('the answer is not {"commands": [...]}')
        if len(listed) > MAX_POLLED_COMMANDS:
            log.warning("http_commands_cut", offered=len(listed), taken=MAX_POLLED_COMMANDS)
        return [
            json.dumps(item, separators=(",", ":")).encode()
            for item in listed[:MAX_POLLED_COMMANDS]
            if isinstance(item, dict)
        ]
