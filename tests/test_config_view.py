"""The daemon's config views: the models' API without pydantic.

``forecourt run`` validates with the models, then hands the daemon frozen
views through a memfd (config/handoff.py). These tests hold the views to the
models generically — every field of every model, whatever fields other
engineers add — and check that reading them imports no pydantic, in a real
second interpreter reading a real memfd.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, SecretStr

import config.models as models
from collector.assembly import option_kwargs
from config.handoff import read_views, to_view, views_of
from config.loader import dump_redacted, load_config
from config.view import ConfigView, Secret
from config.view import dump_redacted as view_dump_redacted

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "config" / "example.toml"

#: Secrets set on top of the example, so the secret fields are exercised too.
OVERRIDES = [
    "uplink.username=station",
    "uplink.password=s3cret-pw",
    "gauge.security_code=ABC123",
    "leds.run=/sys/class/leds/run",
]


@pytest.fixture
def config() -> models.Config:
    return load_config(EXAMPLE, OVERRIDES)


def assert_same(model: Any, view: Any, where: str) -> None:
    """``view`` reads like ``model``: every field, recursively."""
    if isinstance(model, BaseModel):
        assert isinstance(view, ConfigView), where
        assert type(view).__name__ == type(model).__name__, where
        for name in type(model).model_fields:
            assert_same(getattr(model, name), getattr(view, name), f"{where}.{name}")
    elif isinstance(model, SecretStr):
        assert isinstance(view, Secret), where
        assert view.get_secret_value() == model.get_secret_value(), where
        assert str(view) == str(model), where  # masked the same way
    elif isinstance(model, list):
        assert isinstance(view, list) and len(view) == len(model), where
        for i, (m, v) in enumerate(zip(model, view, strict=True)):
            assert_same(m, v, f"{where}.{i}")
    elif dataclasses.is_dataclass(model):  # a protocol's options: a view of its fields
        assert isinstance(view, ConfigView), where
        assert view.view_fields == dataclasses.asdict(model), where
    elif isinstance(model, dict):
        assert view.keys() == model.keys(), where
        for key in model:
            assert_same(model[key], view[key], f"{where}.{key}")
    else:
        assert type(view) is type(model) and view == model, (where, model, view)


def test_every_field_of_every_model_reads_the_same(config: models.Config) -> None:
    view = views_of(config)
    assert_same(config, view, "config")
    assert view.uplink.password.get_secret_value() == "s3cret-pw"
    assert isinstance(view.store.path, Path) and isinstance(view.leds.run, Path)


def test_derived_attributes_and_model_dump_match(config: models.Config) -> None:
    view = views_of(config)
    assert view.device.tzinfo == config.device.tzinfo
    for model_port, view_port in zip(config.ports, view.ports, strict=True):
        # A port's options dump under its protocol's name, as the TOML has them.
        assert view_port.model_dump() == model_port.model_dump()
        assert view_port.model_dump()[model_port.protocol] == view_port.options.model_dump()
        # make_driver passes the options' fields to the driver, from either.
        assert option_kwargs(view_port.options) == option_kwargs(model_port.options)
    dart = next(p for p in view.ports if p.protocol == "dart")
    assert option_kwargs(dart.options)["grades"] == {"1": "1092", "2": "1095"}


def test_config_get_dump_is_the_models_own(config: models.Config) -> None:
    view = views_of(config)
    assert view_dump_redacted(view) == dump_redacted(config)
    assert view_dump_redacted(config) == dump_redacted(config)  # a model still works
    text = json.dumps(view_dump_redacted(view))
    assert "s3cret-pw" not in text and "ABC123" not in text
    assert "s3cret-pw" not in repr(view) and "ABC123" not in repr(view)


def test_views_are_read_only(config: models.Config) -> None:
    view = views_of(config)
    with pytest.raises(AttributeError, match="read-only"):
        view.uplink.host = "10.0.0.9"
    with pytest.raises(AttributeError, match="read-only"):
        view.uplink.password._value = "x"  # type: ignore[misc]
    assert view.uplink.host == config.uplink.host


def test_no_model_defines_an_attribute_the_view_would_lack() -> None:
    """Derived attributes belong in config/derived.py mixins, which views share.

    A property or public method written on a pydantic model itself would be
    missing from the daemon's view: caught here, for models added later too.
    """
    for name, cls in vars(models).items():
        if not (inspect.isclass(cls) and issubclass(cls, BaseModel)) or cls is BaseModel:
            continue
        own = {
            attr
            for attr, value in vars(cls).items()
            if not attr.startswith("_")
            and attr not in cls.model_fields
            and attr not in {"model_config", "model_fields", "model_computed_fields"}
            and (isinstance(value, property) or callable(value))
        }
        assert not own, f"{name} defines {sorted(own)}: move them to a config/derived.py mixin"


def test_a_fresh_interpreter_reads_the_views_without_pydantic(config: models.Config) -> None:
    """The exec'd daemon's side, for real: a memfd inherited by a new process."""
    fd = os.memfd_create("test-config", 0)
    try:
        os.write(fd, pickle.dumps((views_of(config), "9.9.9")))
        os.lseek(fd, 0, os.SEEK_SET)
        code = (
            "import sys, json\n"
            "from config.handoff import read_views\n"
            "from config.view import dump_redacted\n"
            f"v, version = read_views({fd})\n"
            "print(json.dumps({'host': v.uplink.host, 'tz': str(v.device.tzinfo),\n"
            "  'pw': v.uplink.password.get_secret_value(), 'ports': len(v.ports),\n"
            "  'grades': v.ports[2].options.grades,\n"
            "  'options': type(v.ports[2].options).__module__,\n"
            "  'redacted': dump_redacted(v)['uplink']['password'],\n"
            "  'version': version, 'metadata': 'importlib.metadata' in sys.modules,\n"
            "  'pydantic': sorted(m for m in sys.modules\n"
            "    if 'pydantic' in m or 'annotated_types' in m)}))\n"
        )
        out = subprocess.run(
            [sys.executable, "-c", code], cwd=ROOT, pass_fds=(fd,),
            capture_output=True, text=True, timeout=60, check=True,
        )  # fmt: skip
    finally:
        os.close(fd)
    got = json.loads(out.stdout)
    assert got == {
        "host": config.uplink.host,
        "tz": str(config.device.tzinfo),
        "pw": "s3cret-pw",
        "ports": len(config.ports),
        "grades": {"1": "1092", "2": "1095"},
        "options": "config.view",  # a view: protocols.dart.options is never imported
        "redacted": "***",
        "version": "9.9.9",
        "metadata": False,
        "pydantic": [],
    }


def test_the_cli_knows_the_hand_off_option() -> None:
    from collector import cli
    from config import handoff

    assert cli.VALIDATED_FD == handoff.FD_OPTION


def test_read_views_refuses_an_fd_without_views(tmp_path: Path) -> None:
    path = tmp_path / "other.pickle"
    path.write_bytes(pickle.dumps({"not": "a config"}))
    with pytest.raises(TypeError, match="no validated config"):
        read_views(os.open(path, os.O_RDONLY))


def test_a_secret_inside_a_list_or_dict_is_still_a_secret() -> None:
    """to_view is generic: containers are walked, not only model fields."""
    converted = to_view({"a": [SecretStr("x")], "b": (1, Path("/p"))})
    assert converted["a"][0].get_secret_value() == "x"
    assert converted["b"] == (1, Path("/p"))


def test_a_pydantic_typed_value_is_refused_at_the_hand_off() -> None:
    """A field typed e.g. HttpUrl would drag pydantic into the daemon: a clear error
    when the views are built (and so in every config test), not a silent import."""
    from pydantic import HttpUrl

    class WithUrl(BaseModel):
        endpoint: HttpUrl

    with pytest.raises(TypeError, match="pydantic type"):
        to_view(WithUrl(endpoint="https://platform.example/"))  # type: ignore[arg-type]
