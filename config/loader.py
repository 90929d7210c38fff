"""Read a TOML config, apply ``--set`` overrides, validate, explain errors.

Every error becomes one line ``key.path: reason`` (list indices as numbers,
``ports.0.baudrate: …``) so a technician on a serial console can find the
key to fix; file-level problems are ``<file>: reason`` and malformed
overrides ``--set <text>: reason``.
"""

from __future__ import annotations

import contextlib
import copy
import datetime
import re
import tomllib
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, SecretStr, ValidationError
from pydantic_core import ErrorDetails

from config import toml_read
from config.models import Config
from config.toml_write import key_text

#: What ``dump_redacted`` shows instead of a secret.
REDACTED = "***"
#: Longer string inputs are cut in error lines: one line per error, always.
MAX_SHOWN_CHARS = 40

_Path = tuple[str | int, ...]


def _secret_fields(model: type[BaseModel], seen: set[type[BaseModel]] | None = None) -> set[str]:
    """Names of ``SecretStr`` fields anywhere in the schema (errors never show them)."""
    seen = set() if seen is None else seen
    seen.add(model)
    names: set[str] = set()
    for name, field in model.model_fields.items():
        stack = [field.annotation]
        while stack:
            kind = stack.pop()
            if kind is SecretStr:
                names.add(name)
            elif isinstance(kind, type) and issubclass(kind, BaseModel):
                if kind not in seen:
                    names |= _secret_fields(kind, seen)
            else:
                stack += list(typing.get_args(kind))
    return names


#: ``password``, ``security_code``: collector/web/secrets_mask.py keeps the same list.
SECRET_FIELDS = frozenset(_secret_fields(Config))


class ConfigError(Exception):
    """The config is not usable; ``errors`` holds one ``key.path: reason`` line each."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors


def load_config(path: Path, overrides: Sequence[str] = ()) -> Config:
    """Read ``path``, apply ``key.path=value`` overrides, then validate once."""
    return config_from_data(read_toml(path), overrides)


def config_from_data(data: Mapping[str, Any], overrides: Sequence[str] = ()) -> Config:
    """Validate parsed file data as :func:`load_config` does the file: the one
    path the file at start, the web page's editor and ``config.set`` share.
    ``data`` is not modified (overrides go into a copy)."""
    try:
        toml_read.check_data(data)  # a config.set patch nests like any TOML
    except toml_read.TomlBoundError as exc:
        raise ConfigError([f"config: {exc}"]) from None
    work = copy.deepcopy(dict(data))
    raw_texts = _apply_overrides(work, overrides)
    return _validate(work, raw_texts)


#: A decimal string as a command carries a non-integer (canonical JSON has no
#: floats: platform-interface.md), e.g. ``"0.05"``; exponents are not decimals.
DECIMAL_STRING = re.compile(r"-?[0-9]+(\.[0-9]+)?")


def floats_from_decimal_strings(data: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``data`` where each decimal string sitting where the schema
    wants a float is that float (``config.set``: a signed command carries no
    floats, as ``config.get`` shows them as strings). Nothing else changes."""
    work = copy.deepcopy(dict(data))
    try:
        Config.model_validate(work)
    except ValidationError as exc:
        for err in exc.errors():
            value = err["input"]
            decimal = isinstance(value, str) and DECIMAL_STRING.fullmatch(value) is not None
            if err["type"] == "float_type" and decimal:
                with contextlib.suppress(ValueError, KeyError, IndexError, TypeError):
                    _set(work, [str(part) for part in err["loc"]], float(value))
    return work


def parse_toml_text(text: str, name: str = "config") -> dict[str, Any]:
    """TOML text (the web page's editor) → data; a syntax error is ``name: …``,
    and so is text past config/toml_read.py's size and depth bounds."""
    try:
        return toml_read.loads(text)
    except toml_read.TomlBoundError as exc:
        raise ConfigError([f"{name}: {exc}"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{name}: TOML syntax error: {exc}"]) from None


def validate_config(data: Mapping[str, Any]) -> Config:
    """Validate an already-parsed config (e.g. a patched one), errors as ConfigError."""
    return _validate(dict(data), {})


def dump_redacted(config: Config) -> dict[str, Any]:
    """The running config as a JSON-able dict, every secret replaced by ``***``."""
    return _redact(config)


# --- reading ---------------------------------------------------------------


def read_toml(path: Path) -> dict[str, Any]:
    """The file's data, unvalidated; problems as ``<file>: reason``."""
    return parse_toml_bytes(read_config_bytes(path), path)


def read_config_bytes(path: Path) -> bytes:
    """The file's bytes, at most the size bound; problems as ``<file>: reason``."""
    try:
        return toml_read.read_bounded(path)
    except toml_read.FileUnreadable as exc:
        raise ConfigError([str(exc)]) from None


def parse_toml_bytes(raw: bytes, path: Path) -> dict[str, Any]:
    """A config file's bytes (as :func:`read_config_bytes` gave them) → data."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError([f"{path}: not UTF-8 text (byte offset {exc.start})"]) from None
    # tomllib's message already says "(at line L, column C)".
    return parse_toml_text(text, str(path))


# --- overrides -------------------------------------------------------------


def _apply_overrides(data: dict[str, Any], overrides: Sequence[str]) -> dict[_Path, str]:
    """Set each override in ``data``; return path → raw text of unquoted non-strings.

    The raw text lets validation retry ``--set device.station=140100`` as the
    string the technician meant when the field wants a string.
    """
    errors: list[str] = []
    raw_texts: dict[_Path, str] = {}
    for item in overrides:
        try:
            path, value, typed = _parse_override(item)
            resolved = _set(data, path, value)
        except ValueError as exc:
            errors.append(f"--set {item}: {exc}")
            continue
        if typed and not isinstance(value, str):
            raw_texts[resolved] = item.partition("=")[2].strip()
    if errors:
        raise ConfigError(errors)
    return raw_texts


def _parse_override(item: str) -> tuple[list[str], Any, bool]:
    """``key.path=value`` → (segments, value, whether the value was typed TOML)."""
    key, sep, text = item.partition("=")
    key = key.strip()
    if not sep:
        raise ValueError("expected key.path=value")
    if not key:
        raise ValueError("empty key path")
    segments = key.split(".")
    if any(not segment.strip() for segment in segments):
        raise ValueError("empty segment in key path")
    segments = [segment.strip() for segment in segments]
    if len(segments) > toml_read.MAX_TOML_DEPTH:
        raise ValueError(f"key path deeper than {toml_read.MAX_TOML_DEPTH} levels")
    try:
        # Past the depth bound the value is plain text, like any other non-TOML.
        parsed = toml_read.loads("v = " + text)
    except tomllib.TOMLDecodeError:
        return segments, text.strip(), False
    # A value with a newline could smuggle in more keys; dates and times are
    # no config type: both mean the technician typed plain text.
    value = parsed.get("v")
    if len(parsed) != 1 or isinstance(value, datetime.date | datetime.time):
        return segments, text.strip(), False
    return segments, value, True


def _set(data: dict[str, Any], segments: list[str], value: Any) -> _Path:
    """Set ``value`` at ``segments``, creating missing tables; return the resolved path."""
    node: Any = data
    resolved: list[str | int] = []
    for depth, segment in enumerate(segments):
        last = depth == len(segments) - 1
        where = ".".join(str(part) for part in resolved) or "the top level"
        key: str | int
        if isinstance(node, list):
            if not segment.isdigit():
                raise ValueError(f"{where} is an array: expected an index, got {segment!r}")
            key = int(segment)
            if key >= len(node):
                raise ValueError(f"index {key} out of range ({where} has {_items(len(node))})")
        elif isinstance(node, dict):
            key = segment
            if not last and key not in node:
                node[key] = {}  # e.g. `log.level=debug` on a file without [log]
        else:
            raise ValueError(f"{where} is not a table or an array")
        resolved.append(key)
        if last:
            node[key] = value
        else:
            node = node[key]
    return tuple(resolved)


# --- validation ------------------------------------------------------------


def _validate(data: dict[str, Any], raw_texts: Mapping[_Path, str]) -> Config:
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
    retry = [
        tuple(err["loc"])
        for err in errors
        if err["type"] == "string_type" and tuple(err["loc"]) in raw_texts
    ]
    if retry:
        # An override typed as a number or bool where a string is wanted: take
        # the text as typed, as for any other value that is not TOML.
        for loc in retry:
            _set(data, [str(part) for part in loc], raw_texts[loc])
        try:
            return Config.model_validate(data)
        except ValidationError as exc:
            errors = exc.errors()
    raise ConfigError([format_error(err) for err in errors]) from None


def format_error(err: ErrorDetails) -> str:
    """One pydantic error → ``key.path: reason``; a secret's value is never shown."""
    # pydantic names a bad dict key ``…grades.92.[key]``: the key is the path.
    # A key that is not bare (empty, spaced, dotted) is quoted as TOML writes it.
    parts = [p if isinstance(p, int) else key_text(p) for p in err["loc"] if p != "[key]"]
    where = ".".join(str(part) for part in parts) or "config"
    last = err["loc"][-1] if err["loc"] else ""
    reason = _reason(err)
    if isinstance(last, str) and last in SECRET_FIELDS and err["type"] != "invalid":
        # The models' own messages never quote a secret; the generic ones do.
        return f"{where}: {reason.split(', got ')[0]} (a secret: its value is not shown)"
    if err["type"] == "extra_forbidden" and isinstance(last, str) and "." in last:
        reason += " (dotted keys are not paths here: nest the tables)"
    return f"{where}: {reason}"


_EXPECTED = {
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "string_type": "a string",
    "path_type": "a path string",
    "list_type": "an array",
    "model_type": "a table",
    "model_attributes_type": "a table",
    "dict_type": "a table",
}

_BOUNDS = {
    "greater_than": (">", "gt"),
    "greater_than_equal": (">=", "ge"),
    "less_than": ("<", "lt"),
    "less_than_equal": ("<=", "le"),
}

_COUNTS = {"too_short": ("at least", "min_length"), "too_long": ("at most", "max_length")}


def _reason(err: ErrorDetails) -> str:
    kind = err["type"]
    ctx = err.get("ctx") or {}
    shown = _show(err["input"])
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "missing":
        return "required"
    if kind in _EXPECTED:
        return f"expected {_EXPECTED[kind]}, got {shown}"
    if kind in _BOUNDS:
        op, name = _BOUNDS[kind]
        return f"must be {op} {_show(ctx[name])}, got {shown}"
    if kind == "literal_error":
        return f"expected {ctx['expected']}, got {shown}"
    if kind == "finite_number":
        return f"must be a finite number, got {shown}"
    if kind == "string_too_short":
        if ctx["min_length"] == 1:
            return "must not be empty"
        return f"must be at least {ctx['min_length']} characters, got {shown}"
    if kind == "string_too_long":
        return f"must be at most {ctx['max_length']} characters, got {len(err['input'])}"
    if kind in _COUNTS:
        word, name = _COUNTS[kind]
        return f"must have {word} {_items(ctx[name])}, got {ctx['actual_length']}"
    if kind == "invalid":  # config/models*.py's own checks: the message is the reason
        return err["msg"]
    message = err["msg"].removeprefix("Value error, ")
    return message[:1].lower() + message[1:]


def _items(count: int) -> str:
    return f"{count} item" if count == 1 else f"{count} items"


def _show(value: Any) -> str:
    """A short TOML-flavoured rendering of a bad input."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        if len(value) > MAX_SHOWN_CHARS:
            value = value[:MAX_SHOWN_CHARS] + "…"
        return repr(value)
    if isinstance(value, int | float):
        return f"{value:g}" if isinstance(value, float) else str(value)
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    return type(value).__name__


# --- redaction -------------------------------------------------------------


def _redact(model: BaseModel) -> dict[str, Any]:
    data = model.model_dump(mode="json")
    for name in type(model).model_fields:
        value = getattr(model, name)
        if isinstance(value, SecretStr):
            data[name] = REDACTED
        elif isinstance(value, BaseModel):
            data[name] = _redact(value)
        elif isinstance(value, list):
            dumped = data[name]
            data[name] = [
                _redact(item) if isinstance(item, BaseModel) else plain
                for item, plain in zip(value, dumped, strict=True)
            ]
    return data
