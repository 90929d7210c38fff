"""Parts' settings from config sections: a value a part takes as configured
keeps the config's name and is copied by it (collector/assembly.py
``from_section``), from the validated model and from the daemon's view alike."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import pytest

from collector.assembly import from_section, make_uplink_settings
from config.handoff import views_of
from config.loader import load_config

EXAMPLE = Path(__file__).resolve().parent.parent / "config" / "example.toml"


@dataclass(frozen=True)
class _Settings:
    host: str
    port: int = 1
    retries: int = 3


def test_same_names_are_copied_given_ones_win_missing_ones_keep_defaults() -> None:
    section = SimpleNamespace(host="h", port=9, unrelated="x")
    assert from_section(_Settings, section) == _Settings("h", 9, 3)
    assert from_section(_Settings, section, port=10) == _Settings("h", 10, 3)


def test_a_field_neither_configured_nor_given_without_default_is_an_error() -> None:
    with pytest.raises(TypeError):
        from_section(_Settings, SimpleNamespace(port=9))


@pytest.mark.parametrize("view", [False, True])
def test_uplink_settings_carry_configured_values(view: bool) -> None:
    overrides = ["uplink.batch_max_records=17", "uplink.http_timeout_s=12.5", "uplink.kid=k7"]
    model = load_config(EXAMPLE, overrides)
    cfg = views_of(model) if view else model
    settings = make_uplink_settings(cfg, b"\x01" * 16)
    assert (settings.batch_max_records, settings.http_timeout_s, settings.kid) == (17, 12.5, "k7")
    assert settings.key == b"\x01" * 16 and settings.device_id == model.device.id
