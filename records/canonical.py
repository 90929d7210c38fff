"""Canonical JSON: the one byte form of a record that is hashed and sealed.

The store hashes it into the chain (records/chain.py) and the uplink seals
it into the envelope (uplink/envelope.py): both take it from here, so the
bytes the platform hashes are the bytes the box hashed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any


def canonical_json(obj: Any) -> bytes:
    """Canonical JSON: keys sorted, ``,``/``:`` separators, no spaces, UTF-8 text.

    Floats are refused (TypeError): money and volume are decimal strings by
    contract, and float formatting differs between languages, which would
    make the same record hash differently on the platform. Keys must be
    strings; they sort by code point (identical to RFC 8785's UTF-16 order
    for every key the contract defines, all of which are ASCII).
    """
    if not _plain(obj):
        _check_canonical(obj, "$")  # raises, naming where
    try:
        text = json.dumps(
            obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        )
        return text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("canonical_json: a string holds a lone surrogate (not Unicode)") from None


_SCALARS = (str, int, bool, type(None))


def _plain(obj: Any) -> bool:
    """Fast path of :func:`_check_canonical` (the store seals every order with
    it): exact dict/list/scalar types only; anything else takes the slow check."""
    t = type(obj)
    if t is dict:
        for k, v in obj.items():
            if type(k) is not str or (type(v) not in _SCALARS and not _plain(v)):
                return False
        return True
    if t is list or t is tuple:
        return all(type(v) in _SCALARS or _plain(v) for v in obj)
    return t in _SCALARS


def _check_canonical(obj: Any, path: str) -> None:
    if isinstance(obj, float):
        raise TypeError(f"canonical_json: float at {path}; use a decimal string")
    if isinstance(obj, Mapping):
        for k, item in obj.items():
            if not isinstance(k, str):
                raise TypeError(f"canonical_json: non-string key {k!r} at {path}")
            _check_canonical(item, f"{path}.{k}")
    elif isinstance(obj, list | tuple):
        for i, item in enumerate(obj):
            _check_canonical(item, f"{path}[{i}]")
