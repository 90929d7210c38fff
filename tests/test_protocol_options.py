"""A port's ``[ports.<protocol>]`` table, validated against its protocol's descriptor.

Each protocol package declares its options as a stdlib dataclass; config
validates the table with pydantic in the validating step, and the daemon gets
the values through its views (tests/test_config_view.py). Here: the errors a
technician reads, the rules a descriptor sets for a port (poll refused,
address range), and that config/example.toml documents every option.
"""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import protocols
from config.loader import ConfigError, config_from_data, load_config
from config.protocol_options import validate_options
from protocols.descriptor import LineSetting, ProtocolDescriptor
from protocols.sinopec.options import SinopecOptions

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "config" / "example.toml"
DEMO = ROOT / "config" / "demo.toml"


def errors(port: dict[str, Any]) -> list[str]:
    """The ``key.path: reason`` lines of the demo config with ``port`` as port 0."""
    data = tomllib.loads(DEMO.read_text())
    data["ports"] = [{"number": 1, "device": "/dev/ttyS1", "addresses": [1], **port}]
    try:
        config_from_data(data)
    except ConfigError as exc:
        return exc.errors
    return []


def test_a_table_for_another_protocol_is_an_error_naming_the_key() -> None:
    assert errors({"protocol": "dart", "sinopec": {"master_address": 0xE1}}) == [
        "ports.0.sinopec: options of protocol 'sinopec', but this port's protocol is 'dart'"
    ]
    # Only the protocol's own name sets the options.
    assert errors({"protocol": "sinopec", "options": {"offline_after": 3}}) == [
        "ports.0.options: unknown key"
    ]


def test_option_errors_are_located_below_the_protocols_table() -> None:
    assert errors({"protocol": "dart", "dart": {"grades": {"16": "1092"}, "offline_after": 0}}) == [
        "ports.0.dart.offline_after: must be >= 1, got 0",
        "ports.0.dart.grades.16: expected '1', '2', '3', '4', '5', '6', '7', '8', '9',"
        " '10', '11', '12', '13', '14' or '15', got '16'",
    ]
    assert errors({"protocol": "gilbarco", "gilbarco": {"money_decimals": "2"}}) == [
        "ports.0.gilbarco.money_decimals: expected an integer, got '2'"
    ]
    assert errors({"protocol": "sinopec", "sinopec": 5}) == [
        "ports.0.sinopec: expected a table, got 5"
    ]


def test_options_are_the_dataclass_with_its_defaults() -> None:
    assert validate_options(SinopecOptions, {}) == SinopecOptions()
    assert validate_options(SinopecOptions, {"master_address": 0xE3}).master_address == 0xE3
    config = load_config(EXAMPLE)
    assert [type(p.options).__name__ for p in config.ports[:4]] == [
        "SinopecOptions",
        "SinopecOptions",
        "DartOptions",
        "GilbarcoOptions",
    ]
    for port in config.ports[4:]:  # one per further protocol
        expected = protocols.descriptor(port.protocol).load("options")
        assert type(port.options) is expected, port.protocol


def test_addresses_outside_the_protocols_range_are_refused() -> None:
    assert errors({"protocol": "gilbarco", "addresses": [1, 17]}) == [
        "ports.0.addresses.1: protocol 'gilbarco' addresses are 1..16, got 17"
    ]


@dataclasses.dataclass(frozen=True, slots=True)
class _Checked:
    """Options with a cross-field rule in ``__post_init__``."""

    low: int = 1
    high: int = 2

    def __post_init__(self) -> None:
        if self.low > self.high:
            raise ValueError(f"low {self.low} is above high {self.high}")


RELAY_ONLY = ProtocolDescriptor(
    name="ackonly",
    title="A protocol whose sales must be acknowledged",
    describer="protocols.sinopec.describe:describe",
    monitor="protocols.sinopec.monitor:SinopecMonitor",
    options=f"{__name__}:_Checked",
    poll_refused="its transaction record is freed only by a clear command (SPEC D20)",
    line_settings=(LineSetting(4800, "E"),),
)


@pytest.fixture
def relay_only(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """RELAY_ONLY installed as if by a ``forecourt.protocols`` entry point."""
    monkeypatch.setattr(protocols, "_third_party", lambda: {RELAY_ONLY.name: RELAY_ONLY})
    yield


def test_poll_is_refused_with_the_descriptors_reason(relay_only: None) -> None:
    assert errors({"protocol": "ackonly"}) == [
        "ports.0.mode: protocol 'ackonly' cannot be polled: its transaction record is freed"
        " only by a clear command (SPEC D20)"
    ]
    relay = {"protocol": "ackonly", "mode": "relay", "pos_device": "/dev/ttyS9"}
    assert errors(relay) == []
    assert errors({**relay, "ackonly": {"low": 3}}) == ["ports.0.ackonly: low 3 is above high 2"]
    data = tomllib.loads(DEMO.read_text())
    data["ports"] = [{"number": 1, "device": "/dev/ttyS1", "addresses": [1], **relay}]
    [port] = config_from_data(data).ports
    assert (port.baudrate, port.parity, port.options) == (4800, "E", _Checked())


def test_example_toml_documents_every_option_of_every_protocol() -> None:
    """Each built-in protocol with options has a port in config/example.toml
    whose ``[ports.<name>]`` table sets every one of them (with its comment)."""
    ports = tomllib.loads(EXAMPLE.read_text())["ports"]
    for found in protocols.descriptors():
        if found.options is None:
            continue
        names = {f.name for f in dataclasses.fields(found.load("options"))}
        shown: set[str] = set()
        for port in ports:
            if port["protocol"] == found.name:
                shown |= set(port.get(found.name, {}))
        assert names <= shown, f"config/example.toml lacks [ports.{found.name}] {names - shown}"
