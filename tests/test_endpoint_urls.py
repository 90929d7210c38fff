"""``[[uplink.endpoints]]`` by URL (docs/uplink-protocol.md "HTTP transport",
SPEC D3, D18): the four schemes, their default ports, TLS and the HTTP base
path; what a URL may not carry; a URL or host/port/tls, never both."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from config.derived import EndpointAddress, parse_endpoint_url
from config.loader import ConfigError, read_toml, validate_config
from hil.stack import ROOT


@pytest.mark.parametrize(
    ("url", "address"),
    [
        ("mqtt://broker.example", EndpointAddress("mqtt", "broker.example", 1883, False)),
        ("MQTTS://10.0.0.1", EndpointAddress("mqtts", "10.0.0.1", 8883, True)),
        ("http://intake:8080/", EndpointAddress("http", "intake", 8080, False, "")),
        (
            "https://p.example/forecourt/v1/",
            EndpointAddress("https", "p.example", 443, True, "/forecourt/v1"),
        ),
        ("https://[::1]:8443/v1", EndpointAddress("https", "::1", 8443, True, "/v1")),
    ],
)
def test_a_url_names_the_transport_and_where(url: str, address: EndpointAddress) -> None:
    assert parse_endpoint_url(url) == address


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("tcp://host:1883", "must be mqtt://"),
        ("https://", "must be mqtt://"),
        ("https://user:secret@host/v1", "no user or password"),
        ("https://host/v1?token=1", "no query or fragment"),
        ("mqtt://host/some/path", "an MQTT endpoint has no path"),
        ("http://host:99999/", "must be mqtt://"),
    ],
)
def test_a_url_that_cannot_be_an_endpoint_says_why(url: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_endpoint_url(url)


def demo_with(endpoints: list[dict[str, Any]]) -> dict[str, Any]:
    data = copy.deepcopy(read_toml(ROOT / "config" / "demo.toml"))
    data["uplink"].pop("host")
    data["uplink"].pop("port")
    data["uplink"]["keys_file"] = str(ROOT / "config" / "demo-keys.toml")
    data["uplink"]["endpoints"] = endpoints
    return data


def test_endpoints_in_priority_order_mix_mqtt_and_https() -> None:
    config = validate_config(
        demo_with(
            [
                {"name": "wired", "url": "mqtt://10.0.0.1"},
                {"name": "web", "url": "https://p.example/forecourt/v1", "interface": "eth0"},
                {"name": "old", "host": "10.0.0.2", "port": 8883, "tls": True},
            ]
        )
    )
    found = [(e.label, e.address(False)) for e in config.uplink.endpoint_list()]
    assert found == [
        ("wired", EndpointAddress("mqtt", "10.0.0.1", 1883, False)),
        ("web", EndpointAddress("https", "p.example", 443, True, "/forecourt/v1")),
        ("old", EndpointAddress("mqtts", "10.0.0.2", 8883, True)),
    ]


@pytest.mark.parametrize(
    ("endpoint", "where", "reason"),
    [
        ({"url": "https://p.example", "port": 443}, "port", "give url or port, not both"),
        ({"url": "mqtt://b", "tls": True}, "tls", "give url or tls, not both"),
        ({"name": "x"}, "host", "give host (an MQTT broker) or url"),
        ({"url": "ftp://b"}, "url", "must be mqtt://"),
    ],
)
def test_an_endpoint_is_a_url_or_a_host_never_both(
    endpoint: dict[str, Any], where: str, reason: str
) -> None:
    with pytest.raises(ConfigError) as refused:
        validate_config(demo_with([endpoint]))
    assert f"uplink.endpoints.0.{where}: {reason}" in str(refused.value)
