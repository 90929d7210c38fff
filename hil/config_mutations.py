"""Configs a technician could save: a known-good station config with one value
changed, and a real daemon start for every one ``config check`` accepts.

Used by tests/test_config_property.py (a few dozen examples in ``make test``)
and bench/config_fuzz.py (a longer run). The known-good config uses every
table: two ports on the caller's ptys, platform commands and OTA with real
SM2 key files, a seal, LEDs, the web page, a tank; the broker is the caller's.

Where a value may go is read from the schema (config/models*.py and each
protocol's options), so a new key is mutated without a line here: a number
gets its bounds, just outside them, zero, -1 and 10^30 or a value in between;
a literal its choices and one more; a string or path one of :data:`STRINGS`
(the ptys, the config file itself, another program's database, a store of
ours, /dev/null, a directory, a NUL, 5 000 characters …); any key may instead
get a value of another type or be deleted.
"""

from __future__ import annotations

import math
import re
import sqlite3
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from hypothesis import strategies as st

from hil.ready import start_to_ready
from hil.stack import ROOT, free_port

#: Stands for "remove this key" in a mutation.
DELETE = object()
#: Top-level tables whose keys another table's check refers to: a refusal
#: there may name a key of the other (a seal names a pump a port polls; OTA
#: needs platform commands).
RELATED_TABLES = {("ports", "seals"), ("ports", "tanks"), ("uplink", "ota")}

_Path = tuple[str | int, ...]


@dataclass(frozen=True)
class Site:
    """One key of the schema at a place the known-good config has it."""

    path: _Path
    kind: str  # int, float, bool, literal, str, list, dict, table
    low: float | None = None
    high: float | None = None
    choices: tuple[Any, ...] = ()

    @property
    def key(self) -> str:
        return ".".join(str(part) for part in self.path)


@dataclass(frozen=True)
class Station:
    """The files a known-good config points at, made once per test module."""

    work: Path
    ptys: tuple[str, str]
    broker_port: int
    keys: Path
    device_key: Path
    platform_key: Path
    strings: tuple[str, ...]


def make_station(work: Path, ptys: tuple[str, str], broker_port: int) -> Station:
    """Key files, a seal input, LED directories, a store of ours and another
    program's database under ``work``; the ptys stay the caller's."""
    from buffer.store import OrderStore
    from uplink.crypto import sm2_generate

    work.mkdir(parents=True, exist_ok=True)
    keys = work / "keys.toml"
    keys.write_bytes((ROOT / "config" / "demo-keys.toml").read_bytes())
    keys.chmod(0o600)
    private, public = sm2_generate()
    device_key = work / "device-sm2.toml"
    device_key.write_text(f'private = "{private}"\npublic = "{public}"\n')
    device_key.chmod(0o600)
    platform_key = work / "platform.pub.toml"
    platform_key.write_text(f'public = "{public}"\n')
    (work / "seal").write_text("1\n")
    for led in ("run", "net"):
        (work / "leds" / led).mkdir(parents=True, exist_ok=True)
    (work / "ota").mkdir(exist_ok=True)
    ours = work / "ours.sqlite"
    if not ours.exists():
        OrderStore(ours).close()
    other = work / "other.sqlite"
    if not other.exists():
        with sqlite3.connect(other) as db:
            db.execute("CREATE TABLE photos (name TEXT)")
        db.close()
    strings = (
        *ptys, str(keys), str(device_key), str(platform_key), str(ours), str(other),
        str(work / "seal"), str(work / "leds" / "run"), str(work), str(work / "absent" / "x"),
        "/dev/null", "/", "relative/x", "", " ", "x", "x" * 5000, "a\x00b", "a b", "é",
        "localhost", "127.0.0.1", "::1", "127.0.0.1:99999", "8080", "0.0.0.0:8080", "abc:def",
        "+08:00", "-12:00", "+14:01", "p01.a1", "p01.a1.n1", "p99.a99.n9", "demo-k1", "k9",
        "sinopec", "dart", "gilbarco", "tls", "relay", "listen", "poll", "E", "N", "92",
    )  # fmt: skip
    return Station(work, ptys, broker_port, keys, device_key, platform_key, strings)


def good_config(station: Station, example: Path) -> dict[str, Any]:
    """The known-good config of one example, its own store and socket in ``example``."""
    work = station.work
    return {
        "device": {"id": "gw-fuzz", "station": "FUZZ-0001", "timezone": "+08:00"},
        "store": {"path": str(example / "store.sqlite"), "max_records": 250_000},
        "uplink": {
            "host": "127.0.0.1",
            "port": station.broker_port,
            "keys_file": str(station.keys),
            "kid": "demo-k1",
            "reconnect_min_s": 0.5,
            "reconnect_max_s": 5.0,
            "heartbeat_s": 10.0,
            "device_key_file": str(station.device_key),
            "platform_public_key_file": str(station.platform_key),
        },
        "ports": [
            {
                "number": 1,
                "device": station.ptys[0],
                "protocol": "sinopec",
                "parity": "N",
                "addresses": [1, 2],
                "poll_interval_ms": 200,
                "sinopec": {"offline_after": 3, "totals_every": 100},
            },
            {
                "number": 2,
                "device": station.ptys[1],
                "protocol": "dart",
                "parity": "N",
                "addresses": [1],
                "dart": {"grades": {"1": "92"}},
            },
        ],
        "log": {"level": "info", "format": "json"},
        "gauge": {"enabled": False, "link": "tcp", "port": free_port()},
        "tanks": [
            {"number": 1, "grade": "92", "declared_capacity_l": 30000.0, "nozzles": ["p01.a1.n1"]}
        ],
        "wetstock": {"variance_alarm_l": 100.0},
        "edge": {"price_floors": {"92": 5.0}, "amount_tolerance": 0.01},
        "leds": {"run": str(work / "leds" / "run"), "network": str(work / "leds" / "net")},
        "clock": {"step_threshold_ms": 1000},
        "control": {"socket": str(example / "ctl.sock")},
        "web": {"listen": f"127.0.0.1:{free_port()}", "password_file": str(work / "pw")},
        "seals": [{"name": "meter", "dispenser": "p01.a1", "value": str(work / "seal")}],
        "ota": {"root": str(work / "ota"), "release_public_key_file": str(station.platform_key)},
    }


# -- where a value may go ----------------------------------------------------


def sites(data: dict[str, Any]) -> list[Site]:
    """Every key of the schema at a place ``data`` has it (or could have it)."""
    from config.models import Config

    return list(_model_sites(Config, data, ()))


def _model_sites(model: Any, data: Any, prefix: _Path) -> Iterator[Site]:
    import protocols
    from config.protocol_options import options_model

    data = data if isinstance(data, dict) else {}
    for name, field in model.model_fields.items():
        if name == "options":  # a port's [ports.<protocol>] table, below
            protocol = data.get("protocol")
            if isinstance(protocol, str) and protocol in protocols.available():
                found = protocols.descriptor(protocol)
                if found.options is not None:
                    sub = options_model(found.load("options"))
                    yield Site((*prefix, protocol), "table")
                    yield from _model_sites(sub, data.get(protocol), (*prefix, protocol))
            continue
        yield from _type_sites(
            field.annotation, list(field.metadata), (*prefix, name), data.get(name)
        )


def _type_sites(tp: Any, metadata: list[Any], path: _Path, value: Any) -> Iterator[Site]:
    from pydantic import BaseModel, SecretStr

    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        base, *extra = typing.get_args(tp)
        yield from _type_sites(base, [*metadata, *extra], path, value)
    elif origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            if arg is not type(None):
                yield from _type_sites(arg, metadata, path, value)
    elif origin is Literal:
        yield Site(path, "literal", choices=typing.get_args(tp))
    elif origin is list:
        (item,) = typing.get_args(tp)
        yield Site(path, "list")
        if isinstance(value, list):
            for index, element in enumerate(value):
                yield from _type_sites(item, [], (*path, index), element)
    elif origin is dict:
        yield Site(path, "dict")
    elif isinstance(tp, type) and issubclass(tp, BaseModel):
        yield Site(path, "table")
        yield from _model_sites(tp, value, path)
    elif tp is bool:
        yield Site(path, "bool")
    elif tp in (int, float):
        low, high = _bounds(metadata)
        yield Site(path, tp.__name__, low, high)
    elif tp in (str, Path, SecretStr):
        yield Site(path, "str")


def _bounds(metadata: list[Any]) -> tuple[float | None, float | None]:
    import annotated_types
    from pydantic.fields import FieldInfo

    low: Any = None
    high: Any = None
    stack = list(metadata)
    while stack:
        item = stack.pop()
        if isinstance(item, FieldInfo):
            stack += item.metadata
        elif isinstance(item, annotated_types.GroupedMetadata):
            stack += list(item)
        elif isinstance(item, annotated_types.Ge | annotated_types.Gt):
            low = item.ge if isinstance(item, annotated_types.Ge) else item.gt
        elif isinstance(item, annotated_types.Le | annotated_types.Lt):
            high = item.le if isinstance(item, annotated_types.Le) else item.lt
    return low, high


# -- what a value may be -----------------------------------------------------

#: A value of another type than the key wants, for any key.
OTHER_TYPES = ("text", 7, 1.5, True, [1, "a"], {"a": 1}, -(10**30))


def values(site: Site, strings: tuple[str, ...]) -> st.SearchStrategy[Any]:
    """Values for ``site``: its own kind at and around its bounds, mostly."""
    own: st.SearchStrategy[Any]
    if site.kind in ("int", "float"):
        own = _numbers(site)
    elif site.kind == "bool":
        own = st.booleans()
    elif site.kind == "literal":
        own = st.sampled_from([*site.choices, "bogus", 0])
    elif site.kind == "str":
        own = st.sampled_from(strings)
    elif site.kind == "list":
        own = st.lists(st.sampled_from([1, 99, 100, "p01.a1.n1", "p01.a2.n1", "x"]), max_size=3)
    elif site.kind == "dict":
        own = st.sampled_from([{}, {"92": 5.0}, {"1": "92"}, {"92": 0.0}, {"": 1.0}, {"16": "x"}])
    else:  # a table: emptied (its defaults) or replaced
        own = st.just({})
    return st.one_of(own, own, own, st.sampled_from([*OTHER_TYPES, DELETE]))


def _numbers(site: Site) -> st.SearchStrategy[Any]:
    integral = site.kind == "int"
    step = 1 if integral else 1e-3
    edges: list[Any] = [0, -1, 10**30] if integral else [0.0, -1.0, 1e300, math.inf, math.nan]
    inside: st.SearchStrategy[Any] | None = None
    if site.low is not None:
        edges += [site.low, site.low - step]
    if site.high is not None:
        edges += [site.high, site.high + step]
    if site.low is not None and site.high is not None:
        if integral:
            inside = st.integers(int(site.low), int(site.high))
        else:
            inside = st.floats(float(site.low), float(site.high), allow_nan=False)
    if integral:
        edges = [int(e) for e in edges]
    choices = st.sampled_from(edges)
    return choices if inside is None else st.one_of(choices, inside)


def mutated(data: dict[str, Any], path: _Path, value: Any) -> dict[str, Any]:
    """A copy of ``data`` with ``value`` at ``path`` (DELETE: the key removed)."""
    import copy

    out = copy.deepcopy(data)
    node: Any = out
    for part in path[:-1]:
        node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
    last = path[-1]
    if isinstance(node, list):
        if value is DELETE:
            del node[int(last)]
        else:
            node[int(last)] = value
    elif value is DELETE:
        node.pop(last, None)
    else:
        node[last] = value
    return out


# -- judging -----------------------------------------------------------------


def judge(station: Station, example: Path, path: _Path, value: Any) -> tuple[bool, str | None]:
    """(accepted by the check, what went wrong or None) for the known-good
    config mutated at ``path``: a refusal must name its key; an accepted config
    must start to READY=1, answer on its control socket and stop with 0."""
    import contextlib

    from collector.remote.config_env import config_errors
    from config.toml_write import dumps

    example.mkdir(parents=True)
    data = mutated(good_config(station, example), path, value)
    config = example / "station.toml"
    config.write_text(dumps(data))
    with contextlib.chdir(example):  # relative paths: where the daemon runs
        checked = config_errors(config, [])  # what ``forecourt config check`` runs
    if isinstance(checked, list):
        return False, "; ".join(refusal_problems(checked, path)) or None
    sock = checked.control.socket
    return True, start_to_ready(config, example, sock if sock.startswith(str(example)) else None)


_LINE = re.compile(r'^(?P<key>[A-Za-z0-9_-]+(?:\.(?:[A-Za-z0-9_-]+|"(?:[^"\\]|\\.)*"))*): .')


def refusal_problems(lines: list[str], path: _Path) -> list[str]:
    """What is wrong with the refusal of a config mutated at ``path``: each
    line must be ``key.path: reason`` naming a key of the schema, and one of
    them the changed key's table (or a table whose check refers to it)."""
    from config.models import Config

    problems: list[str] = []
    if not lines:
        return ["refused without a line"]
    tables = set()
    for line in lines:
        match = _LINE.match(line)
        top = match["key"].split(".")[0] if match else None
        if match is None or top not in Config.model_fields:
            problems.append(f"not a key.path line: {line!r}")
        else:
            tables.add(top)
    changed = str(path[0])
    related = {changed} | {b for a, b in RELATED_TABLES if a == changed}
    related |= {a for a, b in RELATED_TABLES if b == changed}
    if not problems and not tables & related:
        problems.append(f"no line names {'.'.join(map(str, path))} or its table: {lines}")
    return problems
