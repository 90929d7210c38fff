"""``[uplink]`` and ``[[uplink.endpoints]]``: the way to the platform's broker.

Part of the config schema (config/models.py re-exports every name here).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator

from config.derived import EndpointDerived, UplinkDerived, parse_endpoint_url
from config.models_base import (
    _MODEL_CONFIG,
    TCP_PORT_MAX,
    TCP_PORT_MIN,
    FilePath,
    HostName,
    _checked_host,
    _fail,
    _invalid,
    _LocatedError,
)

#: MQTT keepalive: below 10 s the 4G link pays for pings; above an hour a dead
#: link goes unnoticed for too long (SPEC D7 online state).
KEEPALIVE_MIN_S, KEEPALIVE_MAX_S = 10, 3600
#: Records per uplink message: bounded so one message stays well under
#: typical broker message limits and a lost batch costs little to resend.
BATCH_MAX_RECORDS_LIMIT = 1000
#: aiomqtt warns past 10 pending publishes, and every in-flight batch is
#: re-sent after a reconnect, so more in flight only costs duplicates.
MAX_INFLIGHT_LIMIT = 20
#: Heartbeat period (SPEC D7): at least 1 s, at most an hour.
HEARTBEAT_MIN_S, HEARTBEAT_MAX_S = 1, 3600

#: An endpoint URL: a host name (253) with a scheme, port and a short base path.
URL_MAX_CHARS = 512
#: How often the command URL is polled while only HTTP is up: below 5 s the
#: polls cost 4G traffic for nothing; above an hour a command waits too long.
HTTP_COMMAND_POLL_MIN_S, HTTP_COMMAND_POLL_MAX_S = 5, 3600
#: One HTTP request's whole exchange (connect excluded): a batch of
#: ``max_inflight`` envelopes up over a slow 4G link and the answer back.
#: Below 2 s a loaded platform passes for dead; above 10 minutes a dead one
#: holds the orders for longer than any wait is worth.
HTTP_TIMEOUT_MIN_S, HTTP_TIMEOUT_MAX_S = 2, 600
#: Linux network interface names are at most IFNAMSIZ − 1 = 15 bytes.
IFNAME_MAX_CHARS = 15
#: Endpoints a config may list (SPEC D18: wired, 4G, a leased line …): more
#: than a handful is a typo, and each one costs a round of connect attempts.
MAX_ENDPOINTS = 8
#: Connect attempts on one endpoint before the next is tried: 1 moves at the
#: first refusal (a broker restarting is then taken for a dead link), 10 sits
#: on a dead link for minutes of backoff.
ATTEMPTS_PER_ENDPOINT_MAX = 10
#: How often the primary is probed while on a backup: below 5 s the probes
#: cost 4G traffic for nothing; above a day the station stays on 4G for good.
PROBE_PRIMARY_MIN_S, PROBE_PRIMARY_MAX_S = 1, 86_400
#: No endpoint reachable for this long raises NETWORK_LOSS (SPEC F1). At
#: least 1 s (tests); at most a day (a longer outage going unalarmed is no check).
NETWORK_LOSS_MIN_S, NETWORK_LOSS_MAX_S = 1, 86_400
#: Reconnect backoff: below 0.1 s a dead broker costs a connect attempt per
#: loop turn; above an hour without trying is an outage of our own making.
RECONNECT_MIN_S, RECONNECT_MAX_S = 0.1, 3600.0
#: A kid is 1..64 characters (uplink/keys.py): it travels in every envelope.
KID_MAX_CHARS = 64
#: MQTT strings carry a 16-bit length (MQTT 3.1.1 §1.5.3).
MQTT_STRING_MAX_BYTES = 65_535
#: A request (PUBLISH QoS 1, SUBSCRIBE) with no answer at all from the broker
#: for this long: the link is silent (a frozen node) and is left. Below 1 s a
#: loaded broker or a 4G round trip passes for dead; above 5 minutes a frozen
#: node holds the station's orders for longer than any outage worth bridging.
ACK_TIMEOUT_MIN_S, ACK_TIMEOUT_MAX_S = 1, 300
#: Refused command SUBSCRIBEs on one endpoint before the next one is tried:
#: 1 leaves a node at its first hiccup, beyond 100 never in practice.
COMMAND_REFUSALS_MAX = 100
#: The command subscription's retry backoff cap: at least 1 s (a broker that
#: closes the connection on a refused SUBSCRIBE costs a reconnect per retry),
#: at most an hour (commands would stay off for longer than the platform waits).
COMMAND_RETRY_MAX_MIN_S, COMMAND_RETRY_MAX_MAX_S = 1, 3600
#: Connected time without the command channel before COMMAND_CHANNEL_DOWN:
#: at least 1 s (tests), at most a day.
COMMAND_DOWN_ALARM_MIN_S, COMMAND_DOWN_ALARM_MAX_S = 1, 86_400


class EndpointConfig(EndpointDerived, BaseModel):
    """One way to the platform's broker (SPEC D10, D18; platform-interface.md
    "Transport"): ``[[uplink.endpoints]]``, the first one the primary."""

    model_config = _MODEL_CONFIG

    #: What the heartbeat's ``link`` and the alarms call it ("wired", "4g").
    name: Annotated[str, Field(min_length=1, max_length=32)] | None = None
    #: ``mqtt://``, ``mqtts://``, ``http://`` or ``https://`` host[:port][/path]:
    #: the transport and where (config/derived.py ``parse_endpoint_url``).
    #: Instead of ``host``/``port``/``tls``, which name an MQTT broker.
    url: Annotated[str, Field(min_length=1, max_length=URL_MAX_CHARS)] | None = None
    host: HostName | None = None
    port: Annotated[int, Field(ge=TCP_PORT_MIN, le=TCP_PORT_MAX)] = 1883
    #: Bind the connection to this network interface (SO_BINDTODEVICE), so the
    #: 4G endpoint really goes out over the modem whatever the routing table says.
    interface: Annotated[str, Field(min_length=1, max_length=IFNAME_MAX_CHARS)] | None = None
    #: TLS on this endpoint; unset: ``uplink.tls``.
    tls: bool | None = None

    @field_validator("interface")
    @classmethod
    def _check_interface(cls, value: str | None) -> str | None:
        if value is not None and (
            "/" in value or value in (".", "..") or not value.isprintable() or " " in value
        ):
            raise _invalid(f"not a network interface name: {value!r}")
        return value

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                found = parse_endpoint_url(value)
            except ValueError as exc:
                raise _invalid(str(exc)) from None
            _checked_host(found.host)
        return value

    @model_validator(mode="after")
    def _url_or_host(self) -> EndpointConfig:
        if self.url is None:
            if self.host is None:
                raise _fail([(("host",), "give host (an MQTT broker) or url", None)])
            return self
        errors: list[_LocatedError] = []
        for key in ("host", "port", "tls"):
            if key in self.model_fields_set:
                reason = f"give url or {key}, not both (the url names it)"
                errors.append(((key,), reason, getattr(self, key)))
        if errors:
            raise _fail(errors)
        return self


class UplinkConfig(UplinkDerived, BaseModel):
    model_config = _MODEL_CONFIG

    #: The one-endpoint shorthand; ``endpoints`` replaces it (not both).
    host: HostName = "127.0.0.1"
    port: Annotated[int, Field(ge=TCP_PORT_MIN, le=TCP_PORT_MAX)] = 1883
    endpoints: Annotated[list[EndpointConfig], Field(max_length=MAX_ENDPOINTS)] = []
    attempts_per_endpoint: Annotated[int, Field(ge=1, le=ATTEMPTS_PER_ENDPOINT_MAX)] = 2
    probe_primary_s: Annotated[float, Field(ge=PROBE_PRIMARY_MIN_S, le=PROBE_PRIMARY_MAX_S)] = 60.0
    network_loss_after_s: Annotated[float, Field(ge=NETWORK_LOSS_MIN_S, le=NETWORK_LOSS_MAX_S)] = (
        120.0
    )
    keepalive_s: Annotated[int, Field(ge=KEEPALIVE_MIN_S, le=KEEPALIVE_MAX_S)] = 60
    #: ``clean``: no session kept by the broker, the platform re-sends an
    #: unanswered command (docs/uplink-protocol.md "Session"); ``persistent``:
    #: the contract's clean_session = false, for brokers that replicate sessions.
    session: Literal["clean", "persistent"] = "clean"
    ack_timeout_s: Annotated[float, Field(ge=ACK_TIMEOUT_MIN_S, le=ACK_TIMEOUT_MAX_S)] = 10.0
    command_refusals_per_endpoint: Annotated[int, Field(ge=1, le=COMMAND_REFUSALS_MAX)] = 3
    command_retry_max_s: Annotated[
        float, Field(ge=COMMAND_RETRY_MAX_MIN_S, le=COMMAND_RETRY_MAX_MAX_S)
    ] = 60.0
    command_down_alarm_s: Annotated[
        float, Field(ge=COMMAND_DOWN_ALARM_MIN_S, le=COMMAND_DOWN_ALARM_MAX_S)
    ] = 60.0
    tls: bool = False
    #: The CA certificates (PEM) a TLS endpoint's certificate must chain to
    #: (``mqtts://``, ``https://``, ``tls = true``); unset: the system's CAs.
    ca_file: FilePath | None = None
    #: While only an HTTP endpoint is up, the command URL is polled this often
    #: (docs/uplink-protocol.md "HTTP transport").
    http_command_poll_s: Annotated[
        float, Field(ge=HTTP_COMMAND_POLL_MIN_S, le=HTTP_COMMAND_POLL_MAX_S)
    ] = 30.0
    http_timeout_s: Annotated[float, Field(ge=HTTP_TIMEOUT_MIN_S, le=HTTP_TIMEOUT_MAX_S)] = 30.0
    #: UTF-8 takes up to 4 bytes a character: this many always fit the 16 bits.
    username: Annotated[str, Field(max_length=MQTT_STRING_MAX_BYTES // 4)] | None = None
    password: SecretStr | None = None
    #: The SM4 key file; it must load and hold ``kid`` (collector/remote/config_env.py).
    keys_file: FilePath
    kid: Annotated[str, Field(min_length=1, max_length=KID_MAX_CHARS)]
    zip: Literal["deflate", "none"] = "deflate"
    batch_max_records: Annotated[int, Field(ge=1, le=BATCH_MAX_RECORDS_LIMIT)] = 100
    max_inflight: Annotated[int, Field(ge=1, le=MAX_INFLIGHT_LIMIT)] = 4
    heartbeat_s: Annotated[float, Field(ge=HEARTBEAT_MIN_S, le=HEARTBEAT_MAX_S)] = 30
    reconnect_min_s: Annotated[float, Field(ge=RECONNECT_MIN_S, le=RECONNECT_MAX_S)] = 1.0
    reconnect_max_s: Annotated[float, Field(ge=RECONNECT_MIN_S, le=RECONNECT_MAX_S)] = 60.0
    # Platform commands: both files set = commands on (down/cmd), or neither.
    device_key_file: FilePath | None = None
    platform_public_key_file: FilePath | None = None

    @field_validator("password")
    @classmethod
    def _check_password(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value().encode()) > MQTT_STRING_MAX_BYTES:
            raise _invalid(f"must be at most {MQTT_STRING_MAX_BYTES} bytes (an MQTT string)")
        return value

    @model_validator(mode="after")
    def _check_command_keys(self) -> UplinkConfig:
        pair = ("device_key_file", "platform_public_key_file")
        for key, other in (pair, pair[::-1]):
            if getattr(self, key) is None and getattr(self, other) is not None:
                reason = f"required with uplink.{other} (platform commands), or set neither"
                raise _fail([((key,), reason, None)])
        return self

    @model_validator(mode="after")
    def _check_backoff(self) -> UplinkConfig:
        if self.reconnect_max_s < self.reconnect_min_s:
            raise _fail(
                [
                    (
                        ("reconnect_max_s",),
                        f"must be >= reconnect_min_s ({self.reconnect_min_s:g}),"
                        f" got {self.reconnect_max_s:g}",
                        self.reconnect_max_s,
                    )
                ]
            )
        return self

    @model_validator(mode="after")
    def _check_endpoints(self) -> UplinkConfig:
        if not self.endpoints:
            return self
        errors: list[_LocatedError] = []
        for key in ("host", "port"):
            # At its default it says nothing (a full dump of a running config
            # carries the defaults back); anything else would be ignored silently.
            value = getattr(self, key)
            if key in self.model_fields_set and value != type(self).model_fields[key].default:
                reason = "give either uplink.host/port or [[uplink.endpoints]], not both"
                errors.append(((key,), reason, value))
        seen: set[str] = set()
        for i, endpoint in enumerate(self.endpoints):
            if endpoint.label in seen:
                reason = f"endpoint {endpoint.label!r} is listed twice"
                errors.append((("endpoints", i, "name"), reason, endpoint.name))
            seen.add(endpoint.label)
        if errors:
            raise _fail(errors)
        return self
