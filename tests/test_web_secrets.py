"""The config editor never shows a secret, and keeps it when left alone (D9)."""

from __future__ import annotations

import json
import re
import tomllib
import typing

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, SecretStr

from collector.web.secrets_mask import (
    PLACEHOLDER,
    SECRET_KEYS,
    MaskError,
    mask,
    mask_checked,
    unmask,
)
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


#: Every way TOML lets a secret be written (each value unique, to look for).
FORMS = {
    "dotted": 'uplink.password = "dotted-1"\n',
    "quoted": '[uplink]\n"password" = "quoted-2"\n',
    "literal key": "[uplink]\n'password' = 'literal-3'\n",
    "escaped key": '[uplink]\n"pass\\u0077ord" = "escaped-4"\n',
    "inline table": 'uplink = { host = "h", password = "inline-5" }\n',
    "nested inline": 'a = { b = { security_code = "nested-6" } }\n',
    "array of inline": (
        'links = [\n  { password = "array-7" },  # one\n  { password = "array-8" },\n]\n'
    ),
    "multi-line": '[uplink]\npassword = """\nmulti-9\nline"""\n',
    "multi-line literal": "[gauge]\nsecurity_code = '''\nmulti-10'''\n",
    "array of tables": (
        '[[e]]\npassword = "aot-11"\n[[e]]\nhost = "x"\n[[e]]\npassword = "aot-12"\n'
    ),
    "quoted table": '["uplink"]\npassword = "table-13" # comment "x"\n',
    "crlf": '[uplink]\r\npassword = "crlf-14"\r\n',
}


def test_every_form_of_a_secret_key_is_masked_and_kept() -> None:
    for name, text in FORMS.items():
        shown = mask_checked(text)
        for secret in re.findall(r"[a-z]+-\d+", text):
            assert secret not in shown, (name, shown)
        saved, errors = unmask(shown, text)
        assert errors == [] and saved == text, (name, saved, errors)


WHOLE = """top.password = "dotted-1"
up = { host = "h", password = "inline-5" }
a = { b = { security_code = "nested-6" } }
links = [
  { password = "array-7" },  # one
  { password = "array-8" },
]

[uplink]
"password" = '''
multi-9'''

[[e]]
password = "aot-11"
[[e]]
host = "x"
[[e]]
password = "aot-12"
"""


def test_the_whole_file_of_every_form_at_once() -> None:
    shown = mask_checked(WHOLE)
    assert tomllib.loads(shown) and not re.search(r"[a-z]+-\d+", shown)
    assert unmask(shown, WHOLE) == (WHOLE, [])
    # Placeholders of an array-of-tables element are kept by index.
    typed = shown.replace("[[e]]\nhost", '[[e]]\npassword = "typed"\nhost', 1)
    saved, errors = unmask(typed, WHOLE)
    assert errors == [] and '"aot-11"' in saved and '"aot-12"' in saved and '"typed"' in saved


def test_a_secret_the_scanner_cannot_hide_fails_closed() -> None:
    for text in ('[uplink.password]\nvalue = "s3cret"\n', 'password = "unterminated\n'):
        with pytest.raises(MaskError):
            mask_checked(text)


@settings(max_examples=150)
@given(
    secret=st.text(st.characters(codec="utf-8", exclude_characters="\r"), min_size=1, max_size=12),
    form=st.sampled_from(["basic", "literal", "ml-basic", "ml-literal"]),
    key=st.sampled_from(
        ["password", '"password"', "'security_code'", "x.password", '"a b".password']
    ),
    comment=st.sampled_from(["", "  # password = 'not-it'", " # {{CSRF}}"]),
)
def test_any_secret_value_in_any_form_is_masked(
    secret: str, form: str, key: str, comment: str
) -> None:
    value = {
        "basic": json.dumps(secret, ensure_ascii=False),
        "literal": f"'{secret}'",
        "ml-basic": '"""' + json.dumps(secret, ensure_ascii=False)[1:-1] + '"""',
        "ml-literal": f"'''{secret}'''",
    }[form]
    text = f'[uplink]\nhost = "10.0.0.1"\n{key} = {value}{comment}\nport = 1883\n'
    try:
        parsed = tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return  # not TOML (a quote or newline inside a literal): nothing to mask
    assert parsed["uplink"]["port"] == 1883
    shown = mask_checked(text)
    assert "<secret: unchanged>" in shown and 'host = "10.0.0.1"' in shown
    assert unmask(shown, text) == (text, [])
