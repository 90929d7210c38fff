"""config.set's parts without a broker (SPEC D8, D10): the patch
merge, the TOML writer, the confirm deadline, and every crash point of the
switch and of the revert, on real files (a generator stopped after a step is
what a SIGKILL there leaves on disk).
"""

from __future__ import annotations

import dataclasses
import math
import time
import tomllib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from collector.remote import config_files as files
from collector.remote.config_change import revert_failed_start
from collector.remote.config_rules import (
    BAD_PATCH,
    INVALID_CONFIG,
    check_fixed,
    is_live,
    plan_set,
    shadowed,
)
from config.handoff import views_of
from config.loader import config_from_data, load_config, read_toml
from config.patch import PatchError, changed_paths, merge
from config.toml_write import dumps
from hil.stack import ROOT
from uplink.commands import CommandError

OLD = """\
# the station's file
[device]
id = "gw-1"
station = "S1"

[store]
path = "/var/lib/forecourt/store.sqlite"

[uplink]
host = "10.0.0.1"
keys_file = "/etc/forecourt/keys.toml"
kid = "k1"
heartbeat_s = 30

[[ports]]
number = 1
device = "/dev/ttyS1"
protocol = "sinopec"
addresses = [1]
"""


def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "collector.toml"
    path.write_text(OLD)
    return path


def new_text(path: Path, patch: dict[str, Any]) -> bytes:
    merged, _ = merge(read_toml(path), patch)
    return dumps(merged).encode()


# --- the writer ----------------------------------------------------------------

_keys = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=8)
_floats = st.floats(allow_nan=False)
_scalars = st.one_of(st.booleans(), st.integers(-(2**63), 2**63 - 1), _floats, _keys, st.text())
_values = st.recursive(
    _scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(_keys, inner, max_size=3)),
    max_leaves=12,
)


@given(st.dictionaries(_keys, _values, max_size=5))
def test_written_toml_reads_back_to_the_same_data(data: dict[str, Any]) -> None:
    assert tomllib.loads(dumps(data, header="a\nheader")) == data


@pytest.mark.parametrize("name", ["example.toml", "demo.toml"])
def test_the_shipped_configs_survive_a_rewrite(name: str) -> None:
    data = tomllib.loads((ROOT / "config" / name).read_text())
    assert tomllib.loads(dumps(data)) == data


def test_infinities_and_escapes_are_toml() -> None:
    data = {"a": math.inf, "b": -math.inf, "c": 'quote " back \\ del \x7f nl \n tab \t'}
    assert tomllib.loads(dumps(data)) == data


# --- the merge -----------------------------------------------------------------


def test_merge_follows_json_merge_patch_with_indexed_items() -> None:
    data = {"uplink": {"host": "a", "port": 1}, "ports": [{"number": 1}, {"number": 2}]}
    merged, touched = merge(
        data,
        {
            "uplink": {"host": "b", "port": None, "tls": True},
            "ports": {"1": {"baudrate": 4800}},
            "log": {"level": "debug"},
        },
    )
    assert merged == {
        "uplink": {"host": "b", "tls": True},
        "ports": [{"number": 1}, {"number": 2, "baudrate": 4800}],
        "log": {"level": "debug"},
    }
    assert touched == [
        ("uplink", "host"),
        ("uplink", "port"),
        ("uplink", "tls"),
        ("ports", 1, "baudrate"),
        ("log", "level"),
    ]
    assert data["uplink"] == {"host": "a", "port": 1}, "the input is not modified"
    replaced, _ = merge(data, {"ports": [{"number": 9, "pos_device": None}]})
    assert replaced["ports"] == [{"number": 9}], "an array replaces the array; null is absent"


@pytest.mark.parametrize(
    ("patch", "error"),
    [
        ([1], "patch: must be a non-empty object"),
        ({}, "patch: must be a non-empty object"),
        ({"ports": {"2": {"baudrate": 1200}}}, "ports.2: index out of range (1 items)"),
        ({"ports": {"x": 1}}, "ports: is an array: keys must be indices, got 'x'"),
        ({"ports": {"01": 1}}, "ports: is an array: keys must be indices, got '01'"),
        ({"ports": {"0": None}}, "ports.0: an item cannot be removed by index"),
        ({"a": {"b": {"c": {"d": {"e": {"f": {"g": {"h": {"i": 1}}}}}}}}}, "nested deeper"),
    ],
)
def test_a_patch_that_cannot_apply_says_where(patch: Any, error: str) -> None:
    with pytest.raises(PatchError) as exc:
        merge({"ports": [{"number": 1}]}, patch)
    assert error in str(exc.value)


_json = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1), st.text(max_size=5)),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.sampled_from(["0", "1", "01", "²", "ports", "uplink", "a.b"]), inner),
    ),
    max_leaves=10,
)


@given(st.dictionaries(st.sampled_from(["uplink", "ports", "edge", "zz"]), _json, min_size=1))
def test_any_json_patch_merges_and_writes_or_is_refused(patch: dict[str, Any]) -> None:
    """An untrusted patch either gives data the writer reads back exactly, or a
    PatchError / ValueError (no TOML form): never anything else."""
    data = tomllib.loads((ROOT / "config" / "demo.toml").read_text())
    try:
        merged, _ = merge(data, patch)
        text = dumps(merged)
    except (PatchError, ValueError):
        return
    assert tomllib.loads(text) == merged


def test_changed_paths_and_which_apply_live() -> None:
    before = {"uplink": {"heartbeat_s": 30.0, "port": 1}, "ports": [{"a": 1}]}
    after = {"uplink": {"heartbeat_s": 5.0, "port": 1}, "ports": [{"a": 2}], "x": 1}
    changed = changed_paths(before, after)
    assert changed == [("ports", 0, "a"), ("uplink", "heartbeat_s"), ("x",)]
    assert is_live([("uplink", "heartbeat_s"), ("edge", "price_floors", "92")])
    assert not is_live([("uplink", "heartbeat_s"), ("uplink", "port")])


def test_a_running_secret_is_no_change_of_its_own(tmp_path: Path) -> None:
    """With a broker password set, a change of the heartbeat is that change
    only: the running views' Secret and the new config's secret compare by
    value (a SecretStr against a Secret made every change a restart)."""
    path = config_file(tmp_path)
    data = read_toml(path)
    data["uplink"]["password"] = "s3cret-Pa55"
    running = views_of(config_from_data(data, [])).model_dump()
    _, _, changed = plan_set(data, {"uplink": {"heartbeat_s": 7}}, [], running)
    assert changed == [("uplink", "heartbeat_s")]
    _, _, changed = plan_set(data, {"uplink": {"password": "s3cret-Pa55"}}, [], running)
    assert changed == []


def test_plan_refuses_with_key_paths_and_never_echoes_a_secret(tmp_path: Path) -> None:
    path = config_file(tmp_path)
    config = load_config(path)
    running = views_of(config).model_dump()  # what the daemon passes: its views' dump
    data = read_toml(path)
    with pytest.raises(CommandError) as exc:
        plan_set(data, {"uplink": {"port": 0, "password": 4242424242}}, [], running)
    assert exc.value.code == INVALID_CONFIG
    assert "uplink.port: must be >= 1, got 0" in str(exc.value)
    assert "uplink.password: expected a string (a secret" in str(exc.value)
    assert "4242424242" not in str(exc.value)
    with pytest.raises(CommandError) as exc:
        plan_set(data, {"uplink": {"host": "b"}}, ["uplink.host=a"], running)
    assert exc.value.code == BAD_PATCH
    assert "uplink.host: overridden by --set uplink.host" in str(exc.value)
    new, _, changed = plan_set(data, {"uplink": {"heartbeat_s": 30}}, [], running)
    assert changed == [] and new == config, "the same value is no change"
    assert shadowed([("ports", 0, "baudrate")], ["ports=[]"]) != []
    # A signed command has no floats: decimal strings where the schema wants one.
    patch = {"uplink": {"heartbeat_s": "2.5"}, "edge": {"price_floors": {"92": "7.10"}}}
    new, merged, changed = plan_set(data, patch, [], running)
    assert merged["uplink"]["heartbeat_s"] == 2.5 and merged["edge"]["price_floors"]["92"] == 7.1
    assert changed == [("edge", "price_floors", "92"), ("uplink", "heartbeat_s")]
    with pytest.raises(CommandError) as exc:
        plan_set(data, {"uplink": {"heartbeat_s": "1e3", "kid": 5}}, [], running)
    assert "uplink.heartbeat_s: expected a number, got '1e3'" in str(exc.value)
    assert "uplink.kid: expected a string, got 5" in str(exc.value), "only floats from strings"
    with pytest.raises(CommandError) as exc:
        check_fixed([("uplink", "port"), ("store", "path")])
    assert exc.value.code == BAD_PATCH and str(exc.value).startswith("store.path: not changed")


# --- the deadline --------------------------------------------------------------


def pending(window_s: int = 60, **kw: Any) -> files.Pending:
    base = files.Pending.new("cmd-1", "set", ["uplink.port"], "restart", window_s, b"new")
    return dataclasses.replace(base, **kw)


def test_the_deadline_holds_across_restarts_and_clock_steps() -> None:
    p = pending(60, started_wall_ms=1_000_000, boot_id="boot-a", deadline_boot_s=500.0)
    # Same boot: boot time decides, whatever the wall clock says (time.sync stepped it).
    assert p.remaining_s(10**13, "boot-a", 470.0) == 30.0
    assert p.remaining_s(0, "boot-a", 501.0) == -1.0
    # After a reboot: the wall clock.
    assert p.remaining_s(1_000_000 + 45_000, "boot-b", 3.0) == 15.0
    assert p.remaining_s(1_000_000 + 61_000, "boot-b", 3.0) < 0
    # A wall clock before the change began (flat RTC): the window starts over, once.
    assert p.remaining_s(5_000, "boot-b", 3.0) == 60.0
    # Never more than the window (a marker edited to a far deadline).
    assert p.remaining_s(0, "boot-a", 0.0) == 60.0
    assert files.Pending.from_bytes(p.to_bytes()) == p


# --- crash points --------------------------------------------------------------


def crash_during_switch(path: Path, steps: int, text: bytes, marker: files.Pending) -> None:
    run = files.switch_steps(path, text, marker)
    for _ in range(steps):
        next(run)
    run.close()  # the SIGKILL: nothing after this step happens


@pytest.mark.parametrize("steps", [0, 1, 2, 3])
@pytest.mark.parametrize("expired", [False, True])
def test_a_kill_at_any_step_of_the_switch_leaves_a_config_that_starts(
    tmp_path: Path, steps: int, expired: bool
) -> None:
    path = config_file(tmp_path)
    text = new_text(path, {"uplink": {"port": 9}})
    marker = files.Pending.new("cmd-1", "set", ["uplink.port"], "restart", 60, text)
    if expired:
        marker = dataclasses.replace(
            marker,
            deadline_boot_s=files.boottime_s() - 1,
            started_wall_ms=time.time_ns() // 1_000_000 - 61_000,
        )
    crash_during_switch(path, steps, text, marker)
    watching, done = files.settle_at_start(path)
    config = load_config(path)  # it always starts
    if steps < 3:  # before the rename: the old file, and no marker left behind
        assert path.read_text() == OLD and watching is None
        assert done == ("dropped" if steps == 2 else None)
    elif not expired:
        assert config.uplink.port == 9 and watching == marker and done == "watching"
    else:
        assert path.read_text() == OLD and watching is None and done == "reverted"
        note = files.read_note(path)
        assert note is not None and note["command_id"] == "cmd-1"
    assert files.pending_path(path).exists() == (steps == 3 and not expired)


@pytest.mark.parametrize("steps", [0, 1, 2, 3])
def test_a_kill_at_any_step_of_the_revert_leaves_a_config_that_starts(
    tmp_path: Path, steps: int
) -> None:
    path = config_file(tmp_path)
    text = new_text(path, {"uplink": {"port": 9}})
    marker = files.Pending.new("cmd-2", "set", ["uplink.port"], "restart", 60, text)
    files.switch(path, text, marker)
    run = files.revert_steps(path, files.revert_note(marker, "platform not reached"))
    for _ in range(steps):
        next(run)
    run.close()
    # The process restarts: the window has not passed in this test, so a
    # revert cut before the restore runs the new config again, still watched.
    watching, _ = files.settle_at_start(path)
    load_config(path)
    if steps < 2:
        assert watching == marker and path.read_bytes() == text
        files.confirm(path, marker)  # this time the platform was reached
        assert files.read_note(path) is None, "a revert that did not happen is not reported"
    else:
        assert watching is None and path.read_text() == OLD
        note = files.read_note(path)
        assert note is not None and note["reason"] == "platform not reached"
    assert not files.pending_path(path).exists()


def test_a_kill_inside_a_write_leaves_only_a_temp_file_which_the_start_removes(
    tmp_path: Path,
) -> None:
    path = config_file(tmp_path)
    half = tmp_path / f".{path.name}.x1y2.new"  # write_atomically's temp, before its rename
    half.write_text("[device]\nid = ")
    assert files.settle_at_start(path) == (None, None)
    assert not half.exists() and path.read_text() == OLD
    load_config(path)


def test_an_unreadable_marker_reverts_to_prev(tmp_path: Path) -> None:
    path = config_file(tmp_path)
    text = new_text(path, {"uplink": {"port": 9}})
    files.switch(path, text, files.Pending.new("cmd-3", "set", [], "restart", 60, text))
    files.pending_path(path).write_text("{not json")
    assert files.settle_at_start(path) == (None, "reverted")
    assert path.read_text() == OLD and not files.pending_path(path).exists()


def test_a_switched_config_that_cannot_start_is_reverted_at_once(tmp_path: Path) -> None:
    path = config_file(tmp_path)
    text = new_text(path, {"uplink": {"keys_file": "/nowhere/keys.toml"}})
    marker = files.Pending.new("cmd-4", "set", ["uplink.keys_file"], "restart", 600, text)
    assert not revert_failed_start(path, "no marker yet"), "nothing pending: nothing to undo"
    files.switch(path, text, marker)
    assert revert_failed_start(path, "/nowhere/keys.toml: no such file")
    assert path.read_text() == OLD and not files.pending_path(path).exists()
    note = files.read_note(path)
    assert note is not None and "did not start: /nowhere/keys.toml" in note["reason"]


def test_the_writer_keeps_the_mode_and_the_previous_file(tmp_path: Path) -> None:
    path = config_file(tmp_path)
    path.chmod(0o600)
    files.replace_keeping_prev(path, b"x = 1\n")
    assert path.read_bytes() == b"x = 1\n" and path.stat().st_mode & 0o777 == 0o600
    assert files.prev_path(path).read_text() == OLD
    assert sorted(p.name for p in tmp_path.iterdir()) == ["collector.toml", "collector.toml.prev"]


def test_a_revert_that_cannot_be_written_is_tried_again_until_it_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The window passed unconfirmed and the flash refuses the revert (full,
    or read-only for a moment): before, the watch logged it and gave up, the
    box stayed on the unconfirmed config and refused every later change.
    Now it tries again, backing off, and reverts once it can."""
    import asyncio
    from types import SimpleNamespace

    from collector.remote import config_change

    path = config_file(tmp_path)
    text = new_text(path, {"uplink": {"port": 9}})
    pending = files.Pending.new("cmd-9", "set", ["uplink.port"], "restart", 1, text)
    files.switch(path, text, pending)
    pending = dataclasses.replace(pending, deadline_boot_s=files.boottime_s() - 1)  # window over

    stored: list[str] = []
    restarts: list[int] = []
    writer = SimpleNamespace(submit=lambda record, then: stored.append(record.rid) or True)
    store = SimpleNamespace(is_published=lambda kind, rid: False, writer=writer)
    uplink = SimpleNamespace(stats=SimpleNamespace(messages=0), wake=lambda: None)
    collector = SimpleNamespace(
        store=store,
        uplink=uplink,
        config=load_config(path),
        request_restart=lambda: restarts.append(1),
    )
    changes = config_change.ConfigChanges(collector, path, [])  # type: ignore[arg-type]

    real_revert, attempts = files.revert, []

    def full_disk(config: Path, note: dict[str, Any]) -> None:
        attempts.append(1)
        if len(attempts) < 3:
            raise OSError(28, "No space left on device")
        real_revert(config, note)

    monkeypatch.setattr(files, "revert", full_disk)
    monkeypatch.setattr(config_change, "REVERT_RETRY_MIN_S", 0.01)
    asyncio.run(asyncio.wait_for(changes._watch(pending), 30))
    assert len(attempts) == 3, "tried until it could be written"
    assert path.read_text() == OLD and not files.pending_path(path).exists()
    note = files.read_note(path)
    assert note is not None and note["command_id"] == "cmd-9"
    assert restarts == [1], "then the restart onto the old config"
