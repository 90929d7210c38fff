"""What the connection itself says about the broker: closed, or silent.

A closed connection is seen from the transport at once: when the broker
closes the socket (a node killed, a refused packet — RabbitMQ closes the
connection on a SUBSCRIBE it cannot serve), paho's read gets end-of-file and
calls its ``on_disconnect``, which sets aiomqtt's ``_disconnected`` future.
aiomqtt's own waits for a PUBACK or SUBACK do not look at that future (they
wait out their timeout), so the uplink runs every request beside a task
that does (:func:`closed`), and a lost connection ends the session within
milliseconds instead of after an operation timeout. ``_disconnected`` is
aiomqtt's private attribute (2.0 to 2.5); :func:`disconnect_future` fails
loudly (every session, logged) if it is gone, rather than waiting silently.

A broker that stops answering (a frozen node: SIGSTOP, a stalled VM, a
black-holed path) keeps the socket open. :class:`AckClock` measures its
silence: while a request (QoS 1 PUBLISH, SUBSCRIBE) waits for its answer
and no answer at all has come for ``ack_timeout_s``, the link is silent and
is left (:class:`LinkSilent`). A slow link that answers batch after batch is
not silent; an idle one is watched by MQTT keepalive (paho: 1–2 ×
``keepalive_s``).

Nothing here may leave a future's exception unretrieved (asyncio's "Future
exception was never retrieved"): :func:`settle` reads it at the end of every
session.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import aiomqtt

T = TypeVar("T")

#: How often the silence is looked at: a frozen broker is left within
#: ``ack_timeout_s`` + this.
SILENCE_CHECK_S = 0.5


class LinkSilent(aiomqtt.MqttError):
    """The broker answered nothing for ``ack_timeout_s`` while a request waited."""


class LinkClosed(aiomqtt.MqttError):
    """The transport reported the connection closed."""


class AckClock:
    """Requests awaiting the broker's answer, and when it last answered.

    Sans-IO: times are passed in (monotonic seconds; wall ms for status)."""

    def __init__(
        self,
        timeout_s: float,
        last_answer_ms: int | None = None,
        on_answer: Callable[[float], None] | None = None,
    ) -> None:
        self.timeout_s = timeout_s
        #: Called with the monotonic time of each answer (the link works).
        self.on_answer = on_answer
        self.outstanding = 0
        self._waiting_since = math.inf  # monotonic: outstanding went 0 → 1
        self._last_answer = -math.inf  # monotonic
        #: Wall-clock ms of the last answer (PUBACK, SUBACK), kept from the
        #: previous connection's clock.
        self.last_answer_ms = last_answer_ms

    def sent(self, now: float) -> None:
        if self.outstanding == 0:
            self._waiting_since = now
        self.outstanding += 1

    def answered(self, now: float, now_ms: int) -> None:
        self._last_answer = now
        self.last_answer_ms = now_ms
        self._done()
        if self.on_answer is not None:
            self.on_answer(now)

    def given_up(self) -> None:
        """A request that ended without an answer (cancelled, failed)."""
        self._done()

    def _done(self) -> None:
        self.outstanding = max(0, self.outstanding - 1)
        if self.outstanding == 0:
            self._waiting_since = math.inf

    def silent_for(self, now: float) -> float:
        """Seconds a waiting request has heard nothing from the broker (0: none waits)."""
        if self.outstanding == 0:
            return 0.0
        return now - max(self._waiting_since, self._last_answer)

    async def answer(self, request: Awaitable[T], timeout_s: float) -> T:
        """Await ``request`` (a publish or subscribe made with ``timeout=math.inf``)
        within ``timeout_s`` (:func:`bounded`) and count its answer."""
        self.sent(time.monotonic())
        try:
            result = await bounded(request, timeout_s)
        except BaseException:
            self.given_up()
            raise
        self.answered(time.monotonic(), time.time_ns() // 1_000_000)
        return result

    async def watch(self) -> None:
        """Raise :class:`LinkSilent` once the broker is silent for the timeout."""
        while True:
            silent = self.silent_for(time.monotonic())
            if silent >= self.timeout_s:
                raise LinkSilent(f"no answer from the broker for {silent:.1f} s")
            await asyncio.sleep(min(SILENCE_CHECK_S, self.timeout_s - silent))


async def bounded(request: Awaitable[T], timeout_s: float) -> T:
    """An aiomqtt call made with ``timeout=math.inf``, within ``timeout_s``.

    aiomqtt's own timeout is ``asyncio.wait_for``, which on Python 3.11 can
    swallow a cancel landing as the call completes: a task then runs on after
    a stop and the session never ends (the daemon ignored SIGTERM).
    ``asyncio.timeout`` never does."""
    try:
        async with asyncio.timeout(timeout_s):
            return await request
    except TimeoutError:
        raise aiomqtt.MqttError("Operation timed out") from None


def disconnect_future(client: aiomqtt.Client) -> asyncio.Future[Any]:
    fut = getattr(client, "_disconnected", None)
    if not isinstance(fut, asyncio.Future):
        raise RuntimeError("aiomqtt has no _disconnected future: cannot see a closed connection")
    return fut


async def closed(client: aiomqtt.Client) -> None:
    """Return never; raise :class:`LinkClosed` when the transport reports the
    connection closed (its reason retrieved, so asyncio never warns of it)."""
    fut = disconnect_future(client)
    await asyncio.wait([fut])
    reason = fut.exception() if not fut.cancelled() else None
    raise LinkClosed(f"connection closed: {reason or 'by the broker'}") from reason


def settle(client: aiomqtt.Client) -> None:
    """At a session's end: read the disconnect future's exception, if any."""
    fut = getattr(client, "_disconnected", None)
    if isinstance(fut, asyncio.Future) and fut.done() and not fut.cancelled():
        fut.exception()
