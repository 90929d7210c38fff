"""Which endpoint to try next, when to go back to the primary, and the two
link alarms (SPEC D18 failover, F1 network loss).

Sans-IO: no sockets, no sleeping, no clock of its own. The MQTT loop
(uplink/mqtt.py) tells the policy what happened — a connect failed, a
connection was lost, the primary answered a probe — with ``now`` in
monotonic seconds, and the policy says where to go and which alarm
transitions to store. The I/O that goes with it (binding a socket to an
interface, probing, reading an interface's state) is uplink/links.py.

Rules, in order of the data's interest:

- The endpoints are an ordered list; index 0 is the primary (wired).
- A failed connect or a lost connection counts one failure against the
  endpoint in use; after ``attempts_per_endpoint`` in a row the next endpoint
  (wrapping round) is tried. A connection counts as "in a row" with the
  failures before it unless it lived :data:`HEALTHY_AFTER_S`: an endpoint
  that accepts and drops connections at once is left like one that refuses
  them. An endpoint whose interface is known to be down is left at once:
  retrying a cable that is unplugged only delays the 4G.
- The command channel may move to another endpoint (uplink/command_policy.py):
  :meth:`FailoverPolicy.move_to`, no failure counted; a connection its
  broker closed over a refused SUBSCRIBE is :meth:`FailoverPolicy.interrupted`.
- While connected to a backup the primary is probed every
  ``probe_every_s`` (± :data:`PROBE_JITTER`); after :data:`PROBES_TO_RETURN`
  answers in a row the loop leaves the backup for the primary.
- ``UPLINK_FAILOVER`` is raised by the first connect to a non-primary
  endpoint and cleared by the next connect to the primary; moving from one
  backup to another keeps it raised (the heartbeat's ``link`` says which).
- ``NETWORK_LOSS`` is raised once no endpoint has been connected for
  ``network_loss_after_s`` and cleared by the next connect, with the outage
  length. Both are stored first, so they reach the platform once a link works.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

UPLINK_FAILOVER = "UPLINK_FAILOVER"
NETWORK_LOSS = "NETWORK_LOSS"

#: Answered probes of the primary in a row before moving back: a single answer
#: from a flapping wired link would bounce the session (and its in-flight
#: batches) back and forth.
PROBES_TO_RETURN = 2

#: A connection that lived this long was healthy: its loss starts a new count
#: of failures (and the MQTT loop's backoff starts over).
HEALTHY_AFTER_S = 30.0

#: Probe period jitter, ± this fraction: stations behind one carrier that
#: failed over together must not all probe (and return) in step.
PROBE_JITTER = 0.2


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One way to the broker (config: ``[[uplink.endpoints]]``)."""

    name: str
    host: str
    port: int
    interface: str | None = None
    tls: bool = False

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class LinkAlarm:
    """An alarm transition to store (source ``uplink``, docs/alarms.md)."""

    code: str
    raised: bool
    detail: dict[str, Any]


class Backoff:
    """Exponential backoff with jitter: ``minimum / 2 + U(0, cap)``, the cap
    doubling from ``minimum`` to ``maximum`` (so at most ``maximum + minimum / 2``:
    never a retry at once, and stations that lost one carrier spread out)."""

    def __init__(self, minimum: float, maximum: float, rng: random.Random | None = None) -> None:
        self.minimum, self.maximum = minimum, maximum
        self._attempt = 0
        self._rng = rng or random.Random()

    def reset(self) -> None:
        self._attempt = 0

    def first_delay(self) -> float:
        """The delay of a first attempt (a new endpoint), the backoff unchanged."""
        return self.minimum / 2 + self._rng.uniform(0, self.minimum)

    def next_delay(self) -> float:
        cap = min(self.maximum, self.minimum * (2**self._attempt))
        self._attempt = min(self._attempt + 1, 32)
        return self.minimum / 2 + self._rng.uniform(0, cap)


class FailoverPolicy:
    def __init__(
        self,
        endpoints: Sequence[Endpoint],
        *,
        attempts_per_endpoint: int,
        probe_every_s: float,
        network_loss_after_s: float,
        now: float,
        rng: random.Random | None = None,
    ) -> None:
        if not endpoints:
            raise ValueError("at least one endpoint")
        self.endpoints = tuple(endpoints)
        self.attempts_per_endpoint = attempts_per_endpoint
        self.probe_every_s = probe_every_s
        self.network_loss_after_s = network_loss_after_s
        self._rng = rng or random.Random()
        self.index = 0  # the endpoint in use or to try next
        self.active: int | None = None  # the connected endpoint, if any
        self._connected_at = -math.inf  # monotonic, of the connection up or last up
        self._failures = 0  # in a row, on self.index
        self._tried: set[int] = set()  # endpoints failed since the last connect
        self._last_error: str | None = None  # the latest, "name: error"
        self._primary_error: str | None = None  # why the primary was left
        self._backup_name = self.endpoints[-1].name  # the backup last used
        self._probe_answers = 0
        self._next_probe = math.inf
        self._down_since = now  # monotonic: no endpoint connected since then
        self.failover_raised = False
        self.loss_raised = False

    @property
    def primary(self) -> Endpoint:
        return self.endpoints[0]

    @property
    def target(self) -> Endpoint:
        """The endpoint in use, or the one to try next."""
        return self.endpoints[self.index]

    @property
    def fresh_target(self) -> bool:
        """:attr:`target` has not failed since the last connect: worth a prompt
        first attempt. Once every endpoint has failed, the backoff grows."""
        return self.index not in self._tried

    @property
    def on_backup(self) -> bool:
        return self.active is not None and self.active != 0

    def restore(
        self,
        now: float,
        now_ms: int,
        *,
        failover_raised: bool,
        loss_down_since_ms: int | None,
        backup_name: str | None = None,
    ) -> None:
        """Alarm states the store says are raised (a restart during an outage
        or on a backup): cleared when they end, not forgotten. An outage
        still raised counts from its stored start (``down_since_ms``); a
        failover's clear names the backup its stored raise went ``to``."""
        self.failover_raised = failover_raised
        if backup_name is not None:
            self._backup_name = backup_name
        if loss_down_since_ms is not None:
            self.loss_raised = True
            self._down_since = min(now, now - (now_ms - loss_down_since_ms) / 1000)

    def undo(self, alarm: LinkAlarm) -> None:
        """A transition the store refused: its flag goes back, so the next
        connect (UPLINK_FAILOVER, the clear of NETWORK_LOSS) or the next loss
        check (the raise of NETWORK_LOSS) emits it again."""
        if alarm.code == UPLINK_FAILOVER:
            self.failover_raised = not alarm.raised
        elif alarm.code == NETWORK_LOSS:
            self.loss_raised = not alarm.raised

    # --- what happened -------------------------------------------------

    def connected(self, now: float) -> list[LinkAlarm]:
        """The MQTT session on :attr:`target` is up."""
        self.active = self.index
        self._connected_at = now
        self._tried.clear()
        self._probe_answers = 0
        alarms: list[LinkAlarm] = []
        if self.loss_raised:
            self.loss_raised = False
            outage_s = max(0, round(now - self._down_since))
            alarms.append(
                LinkAlarm(NETWORK_LOSS, False, {"outage_s": outage_s, "endpoint": self.target.name})
            )
        if self.index != 0:
            self._schedule_probe(now)
            if not self.failover_raised:
                self.failover_raised = True
                detail = {"from": self.primary.name, "to": self.target.name}
                if self._primary_error is not None:
                    detail["reason"] = self._primary_error
                alarms.append(LinkAlarm(UPLINK_FAILOVER, True, detail))
        else:
            self._next_probe = math.inf
            if self.failover_raised:
                self.failover_raised = False
                detail = {"from": self._backup_name, "to": self.primary.name}
                alarms.append(LinkAlarm(UPLINK_FAILOVER, False, detail))
        if self.index != 0:
            self._backup_name = self.target.name
        self._last_error = self._primary_error = None
        return alarms

    def failed(self, now: float, error: str, *, link_down: bool = False) -> bool:
        """A connect to :attr:`target` failed. True when the next attempt
        goes to another endpoint. ``link_down``: its interface is down."""
        self._last_error = f"{self.target.name}: {error}"
        if self.index == 0:
            self._primary_error = error
        self._failures += 1
        self._tried.add(self.index)
        if len(self.endpoints) > 1 and (link_down or self._failures >= self.attempts_per_endpoint):
            self.index = (self.index + 1) % len(self.endpoints)
            self._failures = 0
            return True
        return False

    def lost(self, now: float, error: str, *, link_down: bool = False) -> bool:
        """The connection that was up ended: one failure of that endpoint (the
        first of a new count if it was healthy)."""
        if now - self._connected_at >= HEALTHY_AFTER_S:
            self._failures = 0
        self._went_down(now)
        return self.failed(now, error, link_down=link_down)

    def interrupted(self, now: float) -> None:
        """The connection ended for the command channel's sake (its broker
        closed it over a refused SUBSCRIBE): the same endpoint again, no failure."""
        self._went_down(now)

    def move_to(self, now: float, index: int, reason: str) -> None:
        """Leave the endpoint in use for ``index`` (the command channel's move);
        ``reason`` is the UPLINK_FAILOVER's when the primary is left."""
        self._went_down(now)
        if self.index == 0:
            self._primary_error = reason
        self.index = index
        self._failures = 0

    def leave_for_primary(self, now: float) -> None:
        """The session on a backup was closed to go back to the primary."""
        self._went_down(now)
        self.index = 0
        self._failures = 0
        self._tried.clear()
        self._last_error = None

    def _went_down(self, now: float) -> None:
        if self.active is not None:
            self._down_since = now
        self.active = None
        self._next_probe = math.inf

    # --- probing the primary from a backup -----------------------------

    def probe_in(self, now: float) -> float:
        """Seconds until the primary should be probed (inf: not on a backup)."""
        return max(0.0, self._next_probe - now) if self.on_backup else math.inf

    def probe_answered(self, now: float, answered: bool) -> bool:
        """The result of one probe. True: leave the backup for the primary now."""
        self._probe_answers = self._probe_answers + 1 if answered else 0
        if self._probe_answers >= PROBES_TO_RETURN:
            return True
        self._schedule_probe(now)
        return False

    def _schedule_probe(self, now: float) -> None:
        jitter = self._rng.uniform(1 - PROBE_JITTER, 1 + PROBE_JITTER)
        self._next_probe = now + self.probe_every_s * jitter

    # --- network loss (F1) ---------------------------------------------

    def loss_in(self, now: float) -> float:
        """Seconds until NETWORK_LOSS is due (inf: connected or raised already)."""
        if self.active is not None or self.loss_raised:
            return math.inf
        return max(0.0, self._down_since + self.network_loss_after_s - now)

    def check_loss(self, now: float, now_ms: int) -> list[LinkAlarm]:
        """NETWORK_LOSS when no endpoint has been connected for the threshold."""
        if self.loss_in(now) > 0:
            return []
        self.loss_raised = True
        down_for_s = now - self._down_since
        detail: dict[str, Any] = {
            "down_since_ms": now_ms - round(down_for_s * 1000),
            "after_s": round(down_for_s),
            "endpoints": [e.name for e in self.endpoints],
        }
        if self._last_error is not None:
            detail["last_error"] = self._last_error
        return [LinkAlarm(NETWORK_LOSS, True, detail)]
