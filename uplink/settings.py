"""What the uplink is told (:class:`UplinkSettings`, built from the config by
collector/assembly.py) and what it counts (:class:`UplinkStats`, read by the
heartbeat, ``forecourt uplink`` and the web page). Plain data: no I/O."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from uplink.failover import Endpoint


@dataclass(frozen=True, slots=True)
class UplinkSettings:
    device_id: str
    host: str
    port: int
    kid: str
    key: bytes = field(repr=False)
    keepalive_s: int = 60
    tls: bool = False
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    zip: str = "deflate"
    batch_max_records: int = 100
    max_inflight: int = 4
    heartbeat_s: float = 30.0
    reconnect_min_s: float = 1.0
    reconnect_max_s: float = 60.0
    version: str = "0"
    #: Ordered, the primary first; empty: the one ``host:port`` above.
    endpoints: tuple[Endpoint, ...] = ()
    attempts_per_endpoint: int = 2
    probe_primary_s: float = 60.0
    network_loss_after_s: float = 120.0
    #: MQTT clean session (docs/uplink-protocol.md "Session"): no broker-side
    #: session to lose with a cluster node; False: the contract's persistent one.
    clean_session: bool = True
    #: A request waiting this long with no answer from the broker at all: the
    #: link is silent (a frozen node) and is left (uplink/transport.py).
    ack_timeout_s: float = 10.0
    #: The command channel (uplink/command_policy.py): refusals on one
    #: endpoint before the next is tried, the retry backoff's cap, and the
    #: connected time without it before COMMAND_CHANNEL_DOWN.
    command_refusals_per_endpoint: int = 3
    command_retry_max_s: float = 60.0
    command_down_alarm_s: float = 60.0

    def topic(self, leaf: str) -> str:
        return f"forecourt/v1/{self.device_id}/{leaf}"

    def endpoint_list(self) -> tuple[Endpoint, ...]:
        if self.endpoints:
            return self.endpoints
        return (Endpoint(f"{self.host}:{self.port}", self.host, self.port, None, self.tls),)


@dataclass(slots=True)
class UplinkStats:
    #: Publishing: a connection is up (the command channel is separate).
    connected: bool = False
    connected_since_ms: int | None = None  # wall-clock ms of this connection
    connects: int = 0
    messages: int = 0
    records: int = 0
    bytes: int = 0
    #: Wall-clock ms of the last PUBACK of a data message.
    last_puback_ms: int | None = None
    #: The latest error, its wall-clock ms, the part it concerns (``link``:
    #: connecting and publishing; ``commands``: the command channel), and
    #: whether that part has recovered since (then it is only history).
    last_error: str | None = None
    last_error_at_ms: int | None = None
    last_error_part: str | None = None
    last_error_old: bool = False
    #: Link alarms (UPLINK_FAILOVER, NETWORK_LOSS) the store refused; each is
    #: emitted again at the policy's next transition point.
    alarms_not_stored: int = 0
    #: Failures caught and survived, by where (each logged with its traceback):
    #: ``session`` (a bug ended a session: reconnected), ``heartbeat`` (one
    #: skipped), ``command`` (a command's handling failed outside its reply).
    errors: dict[str, int] = field(default_factory=dict)

    def count_error(self, where: str) -> None:
        self.errors[where] = self.errors.get(where, 0) + 1

    def note_error(self, part: str, text: str) -> None:
        self.last_error, self.last_error_part, self.last_error_old = text, part, False
        self.last_error_at_ms = time.time_ns() // 1_000_000

    def recovered(self, part: str) -> None:
        """``part`` works again: its last error is history."""
        if self.last_error_part == part:
            self.last_error_old = True

    def error_status(self) -> dict[str, Any] | None:
        if self.last_error is None:
            return None
        return {
            "text": self.last_error,
            "at_ms": self.last_error_at_ms,
            "part": self.last_error_part,
            "old": self.last_error_old,
        }
