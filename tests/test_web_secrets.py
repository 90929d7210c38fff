"""The config editor never shows a secret, and keeps it when left alone (D9, issue #7)."""

from __future__ import annotations

import typing

from pydantic import BaseModel, SecretStr

from collector.web.secrets_mask import PLACEHOLDER, SECRET_KEYS, mask, unmask
from config.models import Config

FILE = """[uplink]
host = "10.0.0.1"
password = "s3cret-uplink"

[gauge]
security_code = "ABCDEF"
"""


def secret_fields(model: type[BaseModel]) -> set[str]:
    """Every SecretStr field name anywhere in the config models."""
    found = set()
    for name, info in model.model_fields.items():
        annotation = info.annotation
        args = typing.get_args(annotation) or (annotation,)
        for arg in args:
            if arg is SecretStr:
                found.add(name)
            elif isinstance(arg, type) and issubclass(arg, BaseModel):
                found |= secret_fields(arg)
            for inner in typing.get_args(arg):
                if isinstance(inner, type) and issubclass(inner, BaseModel):
                    found |= secret_fields(inner)
    return found


def test_the_mask_covers_every_secret_field_of_the_models() -> None:
    assert secret_fields(Config) == SECRET_KEYS


def test_masked_then_kept() -> None:
    shown = mask(FILE)
    assert "s3cret-uplink" not in shown and "ABCDEF" not in shown
    assert shown.count(PLACEHOLDER) == 2
    edited = shown.replace('host = "10.0.0.1"', 'host = "10.0.0.2"')
    saved, errors = unmask(edited, FILE)
    assert errors == []
    assert saved == FILE.replace('host = "10.0.0.1"', 'host = "10.0.0.2"')


def test_a_new_secret_replaces_the_old_one_and_an_unknown_placeholder_is_refused() -> None:
    edited = mask(FILE).replace(f"password = {PLACEHOLDER}", 'password = "new-one"')
    saved, errors = unmask(edited, FILE)
    assert errors == [] and 'password = "new-one"' in saved and "ABCDEF" in saved
    moved = mask(FILE).replace("[gauge]", "[web]")
    _, errors = unmask(moved, FILE)
    assert errors == ["web.security_code: type a value (there is no stored secret to keep)"]
