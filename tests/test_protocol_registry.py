"""The protocol registry: one descriptor per package, parts imported when used."""

from __future__ import annotations

import subprocess
import sys

import pytest

import protocols
from protocols.descriptor import LineSetting, ProtocolDescriptor, family, load_target


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
        for part in ("census", "options", "responder"):
            if getattr(found, part) is not None:
                assert callable(found.load(part)), f"{found.name}: {part}"


def test_a_family_names_its_parts_by_the_convention() -> None:
    polled = family("ck1313", "t", bus_monitor=False, address_range=(1, 6))
    assert polled.driver == "protocols.ck1313.driver:Ck1313Poller"
    assert polled.monitor == "protocols.ck1313.monitor:Ck1313Monitor"
    assert polled.describer == "protocols.ck1313.describe:describe"
    assert polled.census == "protocols.ck1313.census:census"
    assert polled.options == "protocols.ck1313.options:Ck1313Options"
    assert polled.responder == "hil.dispenser.ck1313:Ck1313Responder"
    assert (polled.bus_monitor, polled.address_range) == (False, (1, 6))
    refused = family("udc", "t", bus_monitor=True, poll_refused="it changes the pump")
    assert refused.driver is None
    assert refused.poll_refused == "it changes the pump"
    assert refused.monitor == "protocols.udc.monitor:UdcMonitor"


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
