"""What the config models derive from their fields, without pydantic.

A model's derived attributes live in a mixin here, not on the pydantic
class: the model inherits the mixin, and so does the daemon's view of it
(config/view.py), which must not import pydantic. tests/test_config_view.py
checks that no model defines a public attribute of its own besides fields.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

#: A wall-clock UTC offset, ``±HH:MM``.
TIMEZONE_PATTERN = re.compile(r"^([+-])(\d{2}):(\d{2})$")
#: Real-world offsets run from −12:00 to +14:00; anything beyond is a typo.
TIMEZONE_MAX_OFFSET = dt.timedelta(hours=14)


def parse_offset(text: str) -> dt.timedelta:
    """``+08:00`` → 8 h; ValueError with the reason a technician reads."""
    match = TIMEZONE_PATTERN.match(text)
    reason = f"must be a UTC offset +HH:MM or -HH:MM within ±14:00, got {text!r}"
    if not match:
        raise ValueError(reason)
    sign, hours, minutes = match.groups()
    if int(minutes) >= 60:
        raise ValueError(reason)
    offset = dt.timedelta(hours=int(hours), minutes=int(minutes))
    if offset > TIMEZONE_MAX_OFFSET:
        raise ValueError(reason)
    return -offset if sign == "-" else offset


#: ``[web] listen`` given as a port alone binds this: the page is on the
#: gateway itself unless another interface is named.
WEB_DEFAULT_HOST = "127.0.0.1"
_LISTEN_PORT = re.compile(r"^[0-9]{1,5}$")


def parse_listen(text: str) -> tuple[str, int]:
    """``[web] listen`` → (host, port): ``"8080"`` or ``":8080"`` (loopback),
    ``"127.0.0.1:8080"``, ``"0.0.0.0:8080"`` (every interface, explicitly),
    ``"[::1]:8080"``, ``"localhost:8080"``. ValueError with the reason."""
    import ipaddress

    reason = (
        'must be "host:port" (an IP address or localhost, and a port 1..65535) or a port'
        f" alone for loopback, got {text!r}"
    )
    if text.startswith("["):
        host, bracket, port = text[1:].partition("]")
        if not bracket or not port.startswith(":"):
            raise ValueError(reason)
        port = port[1:]
        version = 6
    else:
        host, colon, port = text.rpartition(":")
        if not colon:
            host, port = "", text
        version = 4
    if not _LISTEN_PORT.match(port) or not 1 <= int(port) <= 65535:
        raise ValueError(reason)
    if host == "" or host == "localhost":
        host = WEB_DEFAULT_HOST
    else:
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            raise ValueError(reason) from None
        if address.version != version:  # "::1:8080" without brackets
            raise ValueError(reason)
    return host, int(port)


class WebDerived:
    """``[web]``: the address the page binds."""

    if TYPE_CHECKING:
        listen: str | None

    @property
    def bind(self) -> tuple[str, int] | None:
        """(host, port), or None when the page is off."""
        return None if self.listen is None else parse_listen(self.listen)


class DeviceDerived:
    """``[device]``: the station's wall-clock zone."""

    if TYPE_CHECKING:
        timezone: str

    @property
    def tzinfo(self) -> dt.timezone:
        """The dispensers' wall-clock offset; their BCD times carry none."""
        return dt.timezone(parse_offset(self.timezone))


#: The transports an endpoint's ``url`` may name: scheme → (default port, TLS).
#: MQTT as the contract has it; HTTP(S) the second road (docs/uplink-protocol.md
#: "HTTP transport", SPEC D3).
ENDPOINT_SCHEMES: dict[str, tuple[int, bool]] = {
    "mqtt": (1883, False),
    "mqtts": (8883, True),
    "http": (80, False),
    "https": (443, True),
}
HTTP_SCHEMES = frozenset({"http", "https"})


@dataclass(frozen=True, slots=True)
class EndpointAddress:
    """Where an endpoint is: transport, host, port, TLS, and the HTTP base path."""

    scheme: str
    host: str
    port: int
    tls: bool
    #: HTTP only: the base path the device's resources hang under ("" for MQTT).
    path: str = ""


def parse_endpoint_url(text: str) -> EndpointAddress:
    """``mqtt://host:1883``, ``mqtts://host``, ``http://host:8080/base``,
    ``https://host/forecourt/v1`` → its address; ValueError with the reason.
    No user name or password in the URL (``uplink.username``/``password``
    are the secrets, masked as such), no query, no fragment."""
    from urllib.parse import urlsplit

    reason = "must be mqtt://, mqtts://, http:// or https:// host[:port][/path]"
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"{reason}: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in ENDPOINT_SCHEMES or not parts.hostname:
        raise ValueError(f"{reason}, got {text[:80]!r}")
    if parts.username is not None or parts.password is not None:
        raise ValueError("no user or password in the URL: give uplink.username and password")
    if parts.query or parts.fragment:
        raise ValueError(f"no query or fragment in an endpoint URL, got {text[:80]!r}")
    if scheme not in HTTP_SCHEMES and parts.path not in ("", "/"):
        raise ValueError(f"an MQTT endpoint has no path, got {parts.path[:40]!r}")
    default_port, tls = ENDPOINT_SCHEMES[scheme]
    path = parts.path.rstrip("/") if scheme in HTTP_SCHEMES else ""
    return EndpointAddress(scheme, parts.hostname, port or default_port, tls, path)


class EndpointDerived:
    """``[[uplink.endpoints]]``: the name the heartbeat's ``link`` and alarms
    use, and where the endpoint is (from ``url``, else ``host``/``port``)."""

    if TYPE_CHECKING:
        name: str | None
        url: str | None
        host: str | None
        port: int
        interface: str | None
        tls: bool | None

    def address(self, default_tls: bool) -> EndpointAddress:
        """Where it is; ``default_tls`` (``uplink.tls``) where neither ``tls`` nor
        the URL's scheme says."""
        if self.url is not None:
            return parse_endpoint_url(self.url)
        tls = default_tls if self.tls is None else self.tls
        return EndpointAddress("mqtts" if tls else "mqtt", self.host or "", self.port, tls)

    @property
    def label(self) -> str:
        if self.name:
            return self.name
        if self.url is not None:
            try:
                found = parse_endpoint_url(self.url)
            except ValueError:
                return self.url
            return f"{found.host}:{found.port}"
        return f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class ShorthandEndpoint(EndpointDerived):
    """The one endpoint of ``uplink.host``/``port`` (no ``[[uplink.endpoints]]``)."""

    host: str
    port: int
    name: str | None = None
    interface: str | None = None
    tls: bool | None = None
    url: str | None = None


class UplinkDerived:
    """``[uplink]``: the endpoints in order, the primary first."""

    if TYPE_CHECKING:
        host: str
        port: int
        endpoints: Sequence[EndpointDerived]

    def endpoint_list(self) -> list[EndpointDerived]:
        """``endpoints``, or the one ``host``/``port`` of the shorthand."""
        if self.endpoints:
            return list(self.endpoints)
        return [ShorthandEndpoint(host=self.host, port=self.port)]
