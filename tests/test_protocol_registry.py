"""The protocol registry: one descriptor per package, parts imported when used."""

from __future__ import annotations

import subprocess
import sys

import pytest

import protocols
from protocols.descriptor import LineSetting, ProtocolDescriptor, load_target


def test_every_builtin_package_exports_a_descriptor_whose_parts_load() -> None:
    for found in protocols.descriptors():
        assert isinstance(found, ProtocolDescriptor)
        assert found.line_settings, f"{found.name}: no field line settings"
        assert callable(found.load("describer"))
        if found.driver is not None:
            driver = found.load("driver")
            assert driver.name == found.name
            assert driver.ALLOWED_COMMANDS, f"{found.name}: empty allow-list"
        else:
            assert found.poll_refused, f"{found.name}: no driver and no reason"
        if found.monitor is not None:
            assert found.load("monitor").name == found.name


def test_the_registry_imports_no_part_until_asked() -> None:
    code = (
        "import sys, protocols; protocols.available(); "
        "heavy = sorted(m for m in sys.modules if m.endswith(('.driver', '.monitor', "
        "'.describe', '.framer')) or m == 'construct'); print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_unknown_protocol_and_missing_parts_say_what_is_known() -> None:
    with pytest.raises(protocols.UnknownProtocol, match=r"known: .*sinopec"):
        protocols.descriptor("nonesuch")
    with pytest.raises(protocols.UnknownProtocol, match="nonesuch"):
        protocols.load_monitor("nonesuch")
    assert "tls" in protocols.describable()
    assert callable(protocols.load_describer("tls"))


def test_a_descriptor_without_driver_or_monitor_is_refused() -> None:
    with pytest.raises(ValueError, match="neither a driver nor a monitor"):
        ProtocolDescriptor(name="x", title="x", describer="m:f")
    assert str(LineSetting(9600, "E")) == "9600 8E1"
    with pytest.raises(ValueError, match="module:attribute"):
        load_target("protocols.sinopec")
