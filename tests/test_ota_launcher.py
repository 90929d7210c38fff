"""The release launcher's decisions, one per SIGKILL point of docs/upgrade.md (SPEC D8).

Each test lays out a root on disk as a kill at that step would leave it and
checks that the launcher picks a release that starts. Releases here are
directories whose ``venv/bin/python`` is this test venv's python (it has the
project, so the store downgrade on the way back runs the real
buffer/migrate.py); the end-to-end path with real venvs is
tests/test_ota_upgrade.py.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from buffer.store import OrderStore
from collector.ota import launcher
from collector.ota.launcher import MAX_TRIAL_STARTS, choose, read_state, write_state
from hil.stack import ROOT

A, B = "1.0.0", "1.1.0"
NOW = 1_800_000_000_000


def release(root: Path, version: str, schema: int = 3, installed: bool = True) -> None:
    """A release dir whose venv is this tree: this venv's pyvenv.cfg and a .pth
    naming this venv's site-packages (where the project is installed)."""
    path = launcher.release_dir(root, version)
    venv = path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").symlink_to(sys.executable)
    (venv / "pyvenv.cfg").write_text((Path(sys.prefix) / "pyvenv.cfg").read_text())
    site = venv / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}"
    (site / "site-packages").mkdir(parents=True)
    here = next(p for p in sys.path if p.endswith("site-packages"))
    (site / "site-packages" / "this-venv.pth").write_text(f"{here}\n{ROOT}\n")
    (path / launcher.RELEASE_INFO).write_text(
        json.dumps({"version": version, "store_schema": schema})
    )
    if installed:
        (path / launcher.INSTALLED).write_text(version)


def trial_root(tmp_path: Path, **trial: object) -> Path:
    """A good, B on trial — as ota.upgrade leaves it after writing the trial state."""
    root = tmp_path / "ota"
    release(root, A)
    release(root, B)
    launcher.switch_current(root, B)
    write_state(root, {"good": A, "trial": {"version": B, "from": A, "starts": 0,
                                            "deadline_ms": NOW + 600_000, **trial}})  # fmt: skip
    return root


def test_killed_between_trial_state_and_switch_starts_the_trial(tmp_path: Path) -> None:
    """Step 6 → 7: the state names the trial, ``current`` still A: the launcher
    finishes the switch (the state is the truth, the symlink follows)."""
    root = trial_root(tmp_path)
    launcher.switch_current(root, A)
    assert choose(root, [], NOW) == B
    assert launcher.current_release(root) == B
    assert read_state(root)["trial"]["starts"] == 1


def test_killed_between_symlink_and_rename(tmp_path: Path) -> None:
    """A ``current.tmp`` left over by a kill inside the switch is replaced."""
    root = trial_root(tmp_path)
    os.symlink("releases/nowhere", root / "current.tmp")
    launcher.switch_current(root, A)
    assert launcher.current_release(root) == A and not (root / "current.tmp").exists()


def test_a_trial_that_keeps_crashing_is_abandoned_after_max_starts(tmp_path: Path) -> None:
    root = trial_root(tmp_path, command_id="c-1")
    for start in range(1, MAX_TRIAL_STARTS + 1):
        assert choose(root, [], NOW) == B
        assert read_state(root)["trial"]["starts"] == start
    assert choose(root, [], NOW) == A
    state = read_state(root)
    assert launcher.current_release(root) == A and state["good"] == A and state["trial"] is None
    assert state["last"]["result"] == "rolled_back" and state["last"]["command_id"] == "c-1"
    assert "without being marked good" in state["last"]["reason"]
    assert state["last"]["reported"] is False, "A reports it to the platform at its start"


def test_a_trial_past_its_deadline_or_failed_is_abandoned(tmp_path: Path) -> None:
    root = trial_root(tmp_path)
    assert choose(root, [], NOW + 600_001) == A
    assert "deadline" in read_state(root)["last"]["reason"]
    failed = trial_root(tmp_path / "failed", failed="platform not reached")
    assert choose(failed, [], NOW) == A
    assert read_state(failed)["last"]["reason"] == "health gate: platform not reached"


def test_a_half_installed_release_is_never_started(tmp_path: Path) -> None:
    """A kill during the install leaves releases/B without INSTALLED."""
    root = tmp_path / "ota"
    release(root, A)
    release(root, B, installed=False)
    launcher.switch_current(root, A)
    write_state(root, {"good": A, "trial": {"version": B, "from": A, "deadline_ms": NOW + 1}})
    assert choose(root, [], NOW) == A
    assert launcher.current_release(root) == A


def test_a_missing_or_corrupt_state_file_means_current_is_good(tmp_path: Path) -> None:
    root = tmp_path / "ota"
    release(root, A)
    launcher.switch_current(root, A)
    assert choose(root, [], NOW) == A
    (root / launcher.STATE_FILE).write_text('{"good": "1.0')  # a torn write cannot happen
    assert choose(root, [], NOW) == A  # (rename), but a hand-edited file can


def test_ota_rollback_downgrades_the_store_with_the_newer_release(tmp_path: Path) -> None:
    """``ota.rollback`` from B (store schema 3) to A (schema 2): the launcher runs
    B's buffer/migrate.py downgrade before starting A; the order survives."""
    root = tmp_path / "ota"
    release(root, A, schema=2)
    release(root, B, schema=3)
    launcher.switch_current(root, B)
    store_path = tmp_path / "store.sqlite"
    store = OrderStore(store_path)
    store.append_record("alarm", "device:X:raised:1", {"code": "X", "state": "raised"})
    store.close()
    write_state(root, {"good": B, "previous": A, "rollback": {"to": A, "command_id": "c-2"}})
    args = ["run", "--config", "x.toml", "--set", f"store.path={store_path}"]
    assert choose(root, args, NOW) == A
    db = sqlite3.connect(store_path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == 2
    assert db.execute("SELECT count(*) FROM records").fetchone()[0] == 1
    state = read_state(root)
    assert state["good"] == A and state["previous"] == B and state["rollback"] is None
    assert state["last"]["reason"] == "ota.rollback"


def test_ota_rollback_stays_when_the_store_cannot_be_taken_back(tmp_path: Path) -> None:
    """A store the downgrade refuses (here: not a store at all): the good release
    stays, and the reply will say ROLLBACK_FAILED."""
    root = tmp_path / "ota"
    release(root, A, schema=2)
    release(root, B, schema=3)
    launcher.switch_current(root, B)
    store_path = tmp_path / "store.sqlite"
    store_path.write_bytes(b"not a database" * 100)
    write_state(root, {"good": B, "previous": A, "rollback": {"to": A, "command_id": "c-3"}})
    assert choose(root, ["--set", f"store.path={store_path}"], NOW) == B
    state = read_state(root)
    assert state["good"] == B and state["rollback"] is None
    assert state["last"]["result"] == "rollback_failed"


def test_a_downgrade_that_cannot_even_run_is_a_failed_downgrade(tmp_path: Path) -> None:
    """The newer release's python gone (a damaged slot): the launcher does not
    crash at every start — the rollback from a good release is refused as a
    failed downgrade, and the good release keeps running."""
    root = tmp_path / "ota"
    release(root, A, schema=2)
    release(root, B, schema=3)
    launcher.switch_current(root, B)
    (launcher.release_dir(root, B) / "venv" / "bin" / "python").unlink()
    store_path = tmp_path / "store.sqlite"
    OrderStore(store_path).close()
    write_state(root, {"good": B, "previous": A, "rollback": {"to": A, "command_id": "c-4"}})
    assert choose(root, ["--set", f"store.path={store_path}"], NOW) == B
    assert read_state(root)["last"]["result"] == "rollback_failed"


def test_a_config_the_older_release_refuses_is_put_back_on_the_way_back(
    tmp_path: Path,
) -> None:
    """Config migration one step back: the trial's first start keeps the config
    beside A; B then writes a key only B knows (config.set). Abandoning B, A's
    own ``config check`` refuses the file, so the snapshot is put back and B's
    file kept as ``.rejected-1.1.0``: A starts on a config it can read."""
    root = trial_root(tmp_path, command_id="c-9")
    config = tmp_path / "collector.toml"
    original = (ROOT / "config" / "demo.toml").read_bytes()
    config.write_bytes(original)
    args = ["run", "--config", str(config)]
    assert choose(root, args, NOW) == B  # first start: the snapshot is taken
    changed = original + b"\n[only_in_b]\nx = 1\n"
    config.write_bytes(changed)
    state = read_state(root)
    state["trial"]["failed"] = "platform not reached"
    write_state(root, state)
    assert choose(root, args, NOW) == A
    assert config.read_bytes() == original
    assert (tmp_path / "collector.toml.rejected-1.1.0").read_bytes() == changed
    assert read_state(root)["last"]["config"] == "restored"


def test_a_config_the_older_release_reads_is_kept_on_the_way_back(tmp_path: Path) -> None:
    """A change B made that A still reads (here the heartbeat period, as a
    config.set would) survives the rollback: only what A refuses goes back."""
    root = trial_root(tmp_path)
    config = tmp_path / "collector.toml"
    original = (ROOT / "config" / "demo.toml").read_text()
    config.write_text(original)
    args = ["run", "--config", str(config)]
    assert choose(root, args, NOW) == B
    changed = original.replace("heartbeat_s = 10", "heartbeat_s = 20", 1)
    assert changed != original
    config.write_text(changed)
    write_state(root, {**read_state(root), "rollback": {"to": A, "command_id": "c-10"}})
    assert choose(root, args, NOW) == A
    assert config.read_text() == changed
    assert read_state(root)["last"]["config"] == "kept"
    assert not list(tmp_path.glob("collector.toml.rejected-*"))


def test_launcher_is_stdlib_only_and_says_when_there_is_no_release(tmp_path: Path) -> None:
    """Run as systemd runs it: the base python, -I (no venv, no project on the path)."""
    python = getattr(sys, "_base_executable", sys.executable)
    done = subprocess.run(
        [python, "-I", launcher.__file__, "--root", str(tmp_path), "--", "run"],
        capture_output=True, text=True, timeout=30, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == launcher.EX_CONFIG, done.stderr
    assert json.loads(done.stderr.splitlines()[-1])["event"] == "no_release"
