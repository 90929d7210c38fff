"""The optional ``[gauge]``, ``[[tanks]]`` and ``[wetstock]`` tables."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from config.loader import ConfigError, dump_redacted, load_config
from config.models import GaugeConfig

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "config" / "demo.toml"
EXAMPLE = ROOT / "config" / "example.toml"


def errors(*overrides: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(DEMO, overrides)
    return info.value.errors


def test_defaults_when_absent() -> None:
    config = load_config(ROOT / "config" / "example.toml")
    gauge = config.gauge.model_dump(exclude={"enabled", "device"})
    assert gauge == {
        "link": "serial",
        "baudrate": 9600,
        "bytesize": 8,
        "parity": "N",
        "stopbits": 1,
        "host": "127.0.0.1",
        "port": 10001,
        "security_code": None,
        "inventory_s": 10,
        "deliveries_s": 60,
        "alarms_s": 30,
        "leak_s": 300,
        "response_timeout_ms": 2000,
        "offline_after": 3,
    }
    assert [(t.number, t.nozzles) for t in config.tanks] == [
        (1, ["p01.a1.n1", "p01.a2.n1"]),
        (2, ["p01.a1.n2", "p01.a2.n2"]),
    ]


def test_demo_gauge_is_off_and_maps_the_demo_nozzles() -> None:
    config = load_config(DEMO)
    assert config.gauge.enabled is False
    assert [t.nozzles for t in config.tanks] == [
        ["p01.a1.n1", "p01.a1.n2"],
        ["p01.a1.n3"],
        ["p01.a1.n4"],
    ]
    assert config.wetstock.variance_alarm_l == 100


def test_unknown_keys_are_errors() -> None:
    assert errors("gauge.speed=3") == ["gauge.speed: unknown key"]
    assert errors("wetstock.colour=1") == ["wetstock.colour: unknown key"]


def test_serial_gauge_needs_a_device() -> None:
    assert errors("gauge.enabled=true", "gauge.device=") == ["gauge.device: must not be empty"]
    with pytest.raises(ValidationError, match='required when link = "serial"'):
        GaugeConfig.model_validate({"enabled": True})
    assert GaugeConfig.model_validate({"enabled": True, "link": "tcp"}).port == 10001


def test_a_nozzle_in_two_tanks_and_a_bad_key() -> None:
    assert errors('tanks.1.nozzles=["p01.a1.n1", "pump3"]') == [
        "tanks.1.nozzles.1: must be a nozzle key like p01.a1.n2, got 'pump3'",
    ]
    assert errors('tanks.2.nozzles=["p01.a1.n1"]') == [
        "tanks.2.nozzles.0: nozzle 'p01.a1.n1' already drawn from tank 1",
    ]


def test_a_variance_threshold_is_required() -> None:
    assert errors("wetstock.variance_alarm_l=-1") == [
        "wetstock.variance_alarm_l: must be > 0, got -1"
    ]


def test_security_code_is_redacted_and_checked() -> None:
    config = load_config(DEMO, ["gauge.security_code=ABC123"])
    assert config.gauge.security_code is not None
    assert config.gauge.security_code.get_secret_value() == "ABC123"
    assert dump_redacted(config)["gauge"]["security_code"] == "***"
    assert errors("gauge.security_code=ABC") == [
        "gauge.security_code: must be 6 printable ASCII characters (TLS manual §5)"
    ]
