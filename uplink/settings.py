"""What the uplink is told (:class:`UplinkSettings`, built from the config by
collector/assembly.py) and what it counts (:class:`UplinkStats`, read by the
heartbeat, ``forecourt uplink`` and the web page). Plain data: no I/O."""

from __future__ import annotations

from dataclasses import dataclass, field

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

    def topic(self, leaf: str) -> str:
        return f"forecourt/v1/{self.device_id}/{leaf}"

    def endpoint_list(self) -> tuple[Endpoint, ...]:
        if self.endpoints:
            return self.endpoints
        return (Endpoint(f"{self.host}:{self.port}", self.host, self.port, None, self.tls),)


@dataclass(slots=True)
class UplinkStats:
    connected: bool = False
    connects: int = 0
    messages: int = 0
    records: int = 0
    bytes: int = 0
    last_error: str | None = None
    #: Link alarms (UPLINK_FAILOVER, NETWORK_LOSS) the store refused; each is
    #: emitted again at the policy's next transition point.
    alarms_not_stored: int = 0
    #: Failures caught and survived, by where (each logged with its traceback):
    #: ``session`` (a bug ended a session: reconnected), ``heartbeat`` (one
    #: skipped), ``command`` (a command's handling failed outside its reply).
    errors: dict[str, int] = field(default_factory=dict)

    def count_error(self, where: str) -> None:
        self.errors[where] = self.errors.get(where, 0) + 1
