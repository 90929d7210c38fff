"""When to (re)subscribe to ``down/cmd``, when the command channel is down long
enough to alarm, and when to try another endpoint for it.

Sans-IO like uplink/failover.py: the MQTT side (uplink/command_channel.py)
says what happened with ``now`` in monotonic seconds, and this says when
the next SUBSCRIBE may go, which alarm transition to store and whether to
move. Publishing never waits for any of it (docs/uplink-protocol.md
"Command channel").

Rules:

- A SUBSCRIBE goes at connect, unless an earlier one on this endpoint was
  refused and its backoff has not run out: a broker that closes the
  connection on a failed SUBSCRIBE (RabbitMQ, when the session's queue is
  on a dead node) must not cost a reconnect per connect.
- A refusal is a SUBACK failure code (0x80), a connection closed while a
  SUBSCRIBE waited for its SUBACK (RabbitMQ's way of refusing), or a SUBACK
  that did not come in time. Each counts against the endpoint in use, and
  the next attempt waits the backoff (``retry_min_s`` doubling to
  ``retry_max_s``, jitter), carried across connections.
- After ``refusals_per_endpoint`` refusals in a row on one endpoint, the next
  endpoint that has not refused yet in this round is tried for commands too
  (publishing moves with it: one connection). Once every endpoint has
  refused, the collector stays where publishing works and retries in the
  background at the backoff; the round ends when a SUBSCRIBE succeeds.
- ``COMMAND_CHANNEL_DOWN`` is raised once the channel has been down for
  ``alarm_after_s`` of connected time, counted from the first answer the
  broker gave on each connection (a network outage is NETWORK_LOSS's, and a
  broker that accepts connections but answers nothing — a cluster waiting
  for a frozen node — is no working link either), and cleared at the next
  successful SUBSCRIBE.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from uplink.failover import Backoff, LinkAlarm

COMMAND_CHANNEL_DOWN = "COMMAND_CHANNEL_DOWN"

#: The states :attr:`CommandPolicy.state` takes (the status's ``commands.state``).
OFF = "off"  # commands not configured: nothing is subscribed, by design
WAITING = "waiting"  # not connected, or the next attempt is not due yet
SUBSCRIBING = "subscribing"  # a SUBSCRIBE waits for its SUBACK
SUBSCRIBED = "subscribed"
REFUSED = "refused"  # the last attempt was refused; the next waits its backoff


@dataclass(frozen=True, slots=True)
class Move:
    """Leave the endpoint in use for ``index``: it refused commands too often."""

    index: int
    reason: str


class CommandPolicy:
    def __init__(
        self,
        endpoints: Sequence[str],
        *,
        enabled: bool,
        refusals_per_endpoint: int,
        retry_min_s: float,
        retry_max_s: float,
        alarm_after_s: float,
        now: float,
        now_ms: int,
        rng: random.Random | None = None,
    ) -> None:
        self.names = tuple(endpoints)
        self.enabled = enabled
        self.refusals_per_endpoint = refusals_per_endpoint
        self.alarm_after_s = alarm_after_s
        self.backoff = Backoff(retry_min_s, retry_max_s, rng)
        self.state = WAITING if enabled else OFF
        #: Why the channel is not subscribed (None while subscribed or off).
        self.reason: str | None = "not connected yet" if enabled else None
        #: Wall-clock ms since when the channel is subscribed, or since when it
        #: is not (its last loss, or the start).
        self.since_ms = now_ms
        self.endpoint: int | None = None  # the endpoint of the connection, if any
        self.refusals: dict[int, int] = {}  # in a row, per endpoint, this round
        self.refused_round: set[int] = set()  # endpoints that reached the limit
        self.alarm_raised = False
        self._next_attempt = -math.inf  # monotonic: no SUBSCRIBE before this
        self._down_s = 0.0  # connected time without a subscription, up to _down_from
        self._down_from: float | None = None  # monotonic, while connected and down

    @property
    def subscribed(self) -> bool:
        return self.state == SUBSCRIBED

    def enable(self, enabled: bool) -> None:
        """Commands on (a handler is set) or off; before the uplink runs."""
        self.enabled = enabled
        self.state = WAITING if enabled else OFF
        self.reason = "not connected yet" if enabled else None

    def restore(self, *, alarm_raised: bool) -> None:
        """The alarm the store says is raised (the last run stopped with the
        channel down): cleared when the channel comes up, not forgotten."""
        self.alarm_raised = alarm_raised

    def undo(self, alarm: LinkAlarm) -> None:
        """A transition the store refused: asked for again at the next check."""
        if alarm.code == COMMAND_CHANNEL_DOWN:
            self.alarm_raised = not alarm.raised

    def _set(self, state: str, reason: str | None, now_ms: int) -> None:
        if (state == SUBSCRIBED) != (self.state == SUBSCRIBED):
            self.since_ms = now_ms
        self.state, self.reason = state, reason

    # --- what happened -------------------------------------------------

    def off_clear(self) -> list[LinkAlarm]:
        """Commands off, but the store says the last run left the alarm raised
        (commands turned off since): cleared, so it does not hang."""
        if self.enabled or not self.alarm_raised:
            return []
        self.alarm_raised = False
        return [LinkAlarm(COMMAND_CHANNEL_DOWN, False, {"down_s": 0, "reason": "commands off"})]

    def connected(self, now: float, now_ms: int, endpoint: int) -> float:
        """A connection to ``endpoint`` is up: seconds until the SUBSCRIBE is due."""
        self.endpoint = endpoint
        return self.attempt_in(now)

    def alive(self, now: float) -> None:
        """The broker answered on this connection: its time counts from now."""
        counting = self._down_from is not None or self.subscribed
        if self.enabled and self.endpoint is not None and not counting:
            self._down_from = now

    def attempt_in(self, now: float) -> float:
        return max(0.0, self._next_attempt - now) if self.enabled else math.inf

    def subscribing(self, now_ms: int) -> None:
        self._set(SUBSCRIBING, None, now_ms)

    def subscribed_now(self, now: float, now_ms: int) -> list[LinkAlarm]:
        """The SUBACK granted the subscription: the round ends."""
        down_s = self.down_for(now)
        self._set(SUBSCRIBED, None, now_ms)
        self.refusals.clear()
        self.refused_round.clear()
        self.backoff.reset()
        self._next_attempt = -math.inf
        self._down_s, self._down_from = 0.0, None
        if not self.alarm_raised:
            return []
        self.alarm_raised = False
        detail: dict[str, Any] = {"down_s": round(down_s), "endpoint": self._name(self.endpoint)}
        return [LinkAlarm(COMMAND_CHANNEL_DOWN, False, detail)]

    def refused(self, now: float, now_ms: int, reason: str) -> Move | None:
        """The SUBSCRIBE on the endpoint in use was refused (see the rules).
        A :class:`Move` when the next endpoint should be tried for it."""
        self._set(REFUSED, reason, now_ms)
        self._next_attempt = now + self.backoff.next_delay()
        if self.endpoint is None:
            return None
        count = self.refusals.get(self.endpoint, 0) + 1
        self.refusals[self.endpoint] = count
        if count < self.refusals_per_endpoint:
            return None
        self.refused_round.add(self.endpoint)
        self.refusals[self.endpoint] = 0
        for step in range(1, len(self.names)):
            index = (self.endpoint + step) % len(self.names)
            if index not in self.refused_round:
                why = f"commands refused {count} times: {reason}"
                return Move(index, why)
        return None  # every endpoint refused: stay where publishing works

    def disconnected(self, now: float, now_ms: int, reason: str = "not connected") -> None:
        """The connection ended (a SUBSCRIBE it cut short is :meth:`refused` first)."""
        if not self.enabled:
            return
        self._bank(now)
        self.endpoint = None
        if self.state != REFUSED:
            self._set(WAITING, reason, now_ms)

    # --- the alarm -----------------------------------------------------

    def down_for(self, now: float) -> float:
        """Connected seconds without a subscription since it was last up."""
        running = 0.0 if self._down_from is None else now - self._down_from
        return self._down_s + running

    def alarm_in(self, now: float) -> float:
        """Seconds until COMMAND_CHANNEL_DOWN is due (inf: not counting or raised)."""
        if not self.enabled or self.subscribed or self.alarm_raised or self._down_from is None:
            return math.inf
        return max(0.0, self.alarm_after_s - self.down_for(now))

    def check_alarm(self, now: float, now_ms: int) -> list[LinkAlarm]:
        if self.alarm_in(now) > 0:
            return []
        self.alarm_raised = True
        detail: dict[str, Any] = {
            "down_s": round(self.down_for(now)),
            "reason": self.reason or "",
            "endpoint": self._name(self.endpoint),
            "refused_by": [
                self.names[i]
                for i in sorted(self.refused_round | {k for k, v in self.refusals.items() if v})
            ],
        }
        return [LinkAlarm(COMMAND_CHANNEL_DOWN, True, detail)]

    def _name(self, index: int | None) -> str | None:
        return None if index is None else self.names[index]

    def _bank(self, now: float) -> None:
        if self._down_from is not None:
            self._down_s += now - self._down_from
            self._down_from = None
