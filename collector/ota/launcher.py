#!/usr/bin/env python3
"""The release launcher: picks the release to start, rolls a failed trial back, execs it.

SPEC D8; docs/upgrade.md. systemd's ExecStart runs this file
(installed once, outside the A/B release directories, at
/usr/lib/forecourt/launcher.py) with the system python::

    python3 launcher.py --root /var/lib/forecourt/ota -- run --config FILE

It is **stdlib only and imports nothing of the project**: a release that
cannot even be imported must still be rolled back, so the judge cannot live
inside the thing judged. For the same reason it carries its own copy of the
project's one atomic file write (config/atomic.py, between the ``atomic
write`` markers): installed as this one file, it has nothing beside it to
import, and tests/test_atomic_write.py checks that both copies are the same text.

Boot counting as in RAUC / U-Boot ``bootcount``: a
trial release started :data:`MAX_TRIAL_STARTS` times without being marked
good, past its deadline, or marked failed by its own health gate, is
abandoned and the good release started instead. Then the process execs the
chosen release's ``venv/bin/python -I -m collector ARGS`` — same pid, so
``Type=notify`` and the watchdog see the collector itself.

The root holds ``releases/<version>/`` (each with its own venv and an
``INSTALLED`` marker written last), ``current`` (a symlink to the running
release, switched by rename) and ``ota-state.json`` (written atomically):
``{"good", "previous", "trial", "rollback", "last"}``. The collector's OTA
module (collector/ota/) imports the state helpers from here, so both sides
read and write one format.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

STATE_FILE = "ota-state.json"
CURRENT = "current"
RELEASES = "releases"
#: Written last by the installer: a release directory without it is half made.
INSTALLED = "INSTALLED"
#: Per release: {"version", "store_schema", "python"} from its bundle manifest.
RELEASE_INFO = "release.json"

#: Starts a trial gets to be marked good. A release that crashes at start is
#: restarted by systemd (RestartSec=2), so 3 starts is ~10 s of a dead
#: collector before the good release is back; one start would roll back on a
#: single unlucky power cut during the trial.
MAX_TRIAL_STARTS = 3

#: The downgrade of the store (buffer/migrate.py) on the way back runs under
#: this bound: it rewrites every row once; 100 000 rows take well under a
#: minute on the gateway, and systemd's start timeout must not fire first.
MIGRATE_TIMEOUT_S = 600

#: ``config check`` of the release being returned to: one pydantic import and
#: validation, ~1 s on the gateway; far below systemd's start timeout.
CONFIG_CHECK_TIMEOUT_S = 120
#: Per release: the config file as it was when a trial of a newer one began.
CONFIG_SNAPSHOT = "config-at-trial.toml"

EX_CONFIG = 78


def _log(event: str, **fields: Any) -> None:
    # One JSON line on stderr: the journal, like the collector's own logs.
    print(json.dumps({"event": event, "logger": "launcher", **fields}), file=sys.stderr, flush=True)


# --- atomic write: begin (the same text in config/atomic.py and the launcher) ---

#: Mode of a file that did not exist before: owner only (keys, hashes, state).
NEW_FILE_MODE = 0o600
#: Suffix of the temporary file; ``.<name>.`` is its prefix.
TEMP_SUFFIX = ".new"
#: A temporary file older than this is a killed write's leftover: no write
#: takes an hour, so a younger one may still be another writer's.
STALE_TEMP_S = 3600.0


def fsync_dir(directory: Path) -> None:
    """Make the directory's entries (a rename, a new or removed name) durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_stale_temps(path: Path, older_than_s: float = STALE_TEMP_S) -> list[Path]:
    """Remove the temporary files killed writes of ``path`` left; returns them."""
    prefix, removed = f".{path.name}.", []
    cutoff = time.time() - older_than_s
    with contextlib.suppress(FileNotFoundError), os.scandir(path.parent) as entries:
        for entry in entries:
            if not (entry.name.startswith(prefix) and entry.name.endswith(TEMP_SUFFIX)):
                continue
            with contextlib.suppress(FileNotFoundError):
                if entry.stat(follow_symlinks=False).st_mtime < cutoff:
                    os.unlink(entry.path)
                    removed.append(Path(entry.path))
    return removed


def write_atomically(
    path: Path, data: bytes, *, mode: int | None = None, owner: tuple[int, int] | None = None
) -> None:
    """Replace ``path`` by ``data``: the old content or the new, never a torn file.

    ``mode``: the new file's permission bits; None keeps the replaced file's,
    or :data:`NEW_FILE_MODE` for a new file. ``owner``: ``(uid, gid)`` the file
    is given to when root writes it; None keeps the replaced file's owner
    (root edits the daemon's file: still the daemon's), else root's.
    """
    path = Path(path)
    remove_stale_temps(path)
    try:
        old = os.stat(path)
    except FileNotFoundError:
        old = None
    name = f".{path.name}.{os.urandom(6).hex()}{TEMP_SUFFIX}"
    tmp = path.with_name(name)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        try:
            if owner is None and old is not None:
                owner = (old.st_uid, old.st_gid)
            if owner is not None and owner != (0, 0) and os.geteuid() == 0:
                os.fchown(fd, *owner)  # before a byte: never readable by the wrong user
            if mode is None:
                mode = NEW_FILE_MODE if old is None else old.st_mode & 0o7777
            os.fchmod(fd, mode)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def replace_durably(source: Path, path: Path) -> None:
    """Rename a file written by other means (a resumable download) over ``path``,
    its data and the rename both on flash first and after."""
    fd = os.open(source, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(source, path)
    fsync_dir(Path(path).parent)


# --- atomic write: end ------------------------------------------------------


def read_state(root: Path) -> dict[str, Any]:
    """The state file; a missing or unreadable one means "what ``current`` points at is good"."""
    try:
        state = json.loads((root / STATE_FILE).read_text())
        if not isinstance(state, dict):
            raise ValueError("not an object")
    except (OSError, ValueError):
        state = {}
    state.setdefault("good", current_release(root))
    for key in ("previous", "trial", "rollback", "last"):
        state.setdefault(key, None)
    return state


def write_state(root: Path, state: dict[str, Any]) -> None:
    """Written atomically (:func:`write_atomically`): the old or the new state, never half."""
    write_atomically(root / STATE_FILE, json.dumps(state, sort_keys=True, indent=1).encode())


def release_dir(root: Path, version: str) -> Path:
    return root / RELEASES / version


def is_installed(root: Path, version: str | None) -> bool:
    return bool(version) and (release_dir(root, str(version)) / INSTALLED).is_file()


def release_python(root: Path, version: str) -> Path:
    return release_dir(root, version) / "venv" / "bin" / "python"


def release_info(root: Path, version: str) -> dict[str, Any]:
    try:
        info = json.loads((release_dir(root, version) / RELEASE_INFO).read_text())
        return info if isinstance(info, dict) else {}
    except (OSError, ValueError):
        return {}


def current_release(root: Path) -> str | None:
    """The version ``current`` points at, or None."""
    try:
        return Path(os.readlink(root / CURRENT)).name
    except OSError:
        return None


def switch_current(root: Path, version: str) -> None:
    """Point ``current`` at ``releases/<version>``: a new symlink renamed over the
    old one (rename is atomic), then the directory fsynced."""
    tmp = root / (CURRENT + ".tmp")
    tmp.unlink(missing_ok=True)  # a leftover of a kill between symlink and rename
    os.symlink(Path(RELEASES) / version, tmp)
    os.replace(tmp, root / CURRENT)
    fsync_dir(root)


def config_path_from_args(args: list[str]) -> Path | None:
    """The ``--config FILE`` of the collector's arguments."""
    for i, arg in enumerate(args):
        if arg == "--config" and i + 1 < len(args):
            return Path(args[i + 1])
    return None


def store_path_from_args(args: list[str]) -> Path | None:
    """``store.path`` from ``--set store.path=`` or the ``--config`` TOML (tomllib)."""
    import tomllib

    for i, arg in enumerate(args):
        if arg == "--set" and i + 1 < len(args) and args[i + 1].startswith("store.path="):
            return Path(args[i + 1].split("=", 1)[1])
    config = config_path_from_args(args)
    if config is None:
        return None
    try:
        path = tomllib.loads(config.read_text())["store"]["path"]
    # RecursionError: a config nested past the parser (the launcher imports
    # nothing of the project, so not config/toml_read.py's bound either).
    except (OSError, ValueError, KeyError, TypeError, RecursionError):
        return None
    return Path(path)


def downgrade_store(root: Path, newer: str, older: str, args: list[str]) -> bool:
    """Run the newer release's store downgrade to the schema the older reads.

    Only the newer release's code knows its own schema, so its python runs
    buffer/migrate.py (one transaction: a kill half way leaves the store as
    it was, and running it again is a no-op once done). Nothing to do when
    both releases read the same schema. False when the downgrade failed.
    """
    new_schema = release_info(root, newer).get("store_schema")
    old_schema = release_info(root, older).get("store_schema")
    store = store_path_from_args(args)
    if not (isinstance(new_schema, int) and isinstance(old_schema, int)):
        return True
    if new_schema <= old_schema or store is None or not store.exists():
        return True
    argv = [str(release_python(root, newer)), "-I", "-m", "buffer.migrate", "downgrade"]
    argv += [str(store), "--to", str(old_schema)]
    try:
        done = subprocess.run(argv, timeout=MIGRATE_TIMEOUT_S, capture_output=True, text=True)
    except (OSError, subprocess.TimeoutExpired) as exc:
        # The newer release's python is gone or hangs: a failed downgrade (the
        # caller decides), never a launcher that crashes at every start.
        _log("store_downgrade", store=str(store), to=old_schema, error=str(exc))
        return False
    _log("store_downgrade", store=str(store), to=old_schema, rc=done.returncode,
         output=done.stderr.strip()[-500:])  # fmt: skip
    return done.returncode == 0


def snapshot_config(root: Path, older: str, args: list[str]) -> None:
    """Keep the config as it is now beside the release a trial leaves.

    Taken at a trial's first start, before the newer release can change the
    file (config.set): the way back has a config the older release ran with.
    """
    config = config_path_from_args(args)
    if config is None or not config.exists() or not is_installed(root, older):
        return
    write_atomically(release_dir(root, older) / CONFIG_SNAPSHOT, config.read_bytes())


def restore_config(root: Path, older: str, leaving: str, args: list[str]) -> str:
    """Make sure the release we go back to can read the config (docs/upgrade.md).

    The older release's own ``config check`` judges the file as it is now
    (with the same ``--set`` overrides): a config the newer release changed
    but the older still reads is kept (a new broker address must survive a
    rollback). One it refuses — a key only the newer release knows — is kept
    as ``<config>.rejected-<leaving>`` and the snapshot taken when the trial
    began is put back. Returns what was done, for the state's ``last``.
    """
    config = config_path_from_args(args)
    if config is None or not config.exists():
        return "none"
    overrides: list[str] = []
    for i, arg in enumerate(args):
        if arg == "--set" and i + 1 < len(args):
            overrides += ["--set", args[i + 1]]
    argv = [str(release_python(root, older)), "-I", "-m", "collector", "config", "check"]
    try:
        done = subprocess.run(
            [*argv, str(config), *overrides],
            timeout=CONFIG_CHECK_TIMEOUT_S,
            capture_output=True,
            text=True,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        _log("config_check_failed", release=older, error=str(exc))
        return "unchecked"
    if done.returncode == 0:
        return "kept"
    snapshot = release_dir(root, older) / CONFIG_SNAPSHOT
    if not snapshot.exists():
        _log("config_refused_no_snapshot", release=older, errors=done.stdout.strip()[-500:])
        return "refused"
    write_atomically(config.with_name(f"{config.name}.rejected-{leaving}"), config.read_bytes())
    write_atomically(config, snapshot.read_bytes())
    _log("config_restored", release=older, errors=done.stdout.strip()[-500:])
    return "restored"


def abandon(
    root: Path, state: dict[str, Any], back_to: str, reason: str, args: list[str]
) -> dict[str, Any]:
    """Go back to ``back_to``: the store downgrade first (idempotent), then the state."""
    trial = state.get("trial") or {}
    rollback = state.get("rollback") or {}
    leaving = current_release(root) or str(trial.get("version", ""))
    downgraded = True
    if leaving and is_installed(root, leaving):
        downgraded = downgrade_store(root, leaving, back_to, args)
    state = dict(state)
    if not downgraded and not trial:
        # ota.rollback from a good release whose store the older one cannot
        # read: stay (a release that starts beats one that cannot open the store).
        state["rollback"] = None
        state["last"] = {
            "result": "rollback_failed",
            "version": leaving,
            "to": back_to,
            "reason": "store downgrade failed",
            "command_id": rollback.get("command_id"),
            "at_ms": time.time_ns() // 1_000_000,
            "reported": False,
        }
        write_state(root, state)
        _log("rollback_refused", to=back_to, reason="store downgrade failed")
        return state
    config = restore_config(root, back_to, leaving, args) if leaving else "none"
    state["last"] = {
        "result": "rolled_back",
        "config": config,
        "version": trial.get("version", leaving),
        "to": back_to,
        "reason": reason,
        # ota.rollback during a trial answers the rollback command; the
        # upgrade's own command then ends at its "switching" reply.
        "command_id": rollback.get("command_id") or trial.get("command_id"),
        "at_ms": time.time_ns() // 1_000_000,
        "reported": False,
    }
    if not trial:  # ota.rollback from a good release: the two swap places
        state["previous"] = state.get("good")
    state["good"], state["trial"], state["rollback"] = back_to, None, None
    write_state(root, state)
    _log("rolled_back", to=back_to, reason=reason, release=leaving)
    return state


def choose(root: Path, args: list[str], now_ms: int | None = None) -> str | None:
    """The release to start, after any rollback due; the state is saved first."""
    now_ms = time.time_ns() // 1_000_000 if now_ms is None else now_ms
    state = read_state(root)
    trial, rollback, good = state.get("trial"), state.get("rollback"), state.get("good")
    if rollback and is_installed(root, rollback.get("to")):
        state = abandon(root, state, rollback["to"], "ota.rollback", args)
    elif trial:
        version = trial.get("version")
        back = trial.get("from") or good
        reason = None
        if trial.get("failed"):
            reason = f"health gate: {trial['failed']}"
        elif int(trial.get("starts", 0)) >= MAX_TRIAL_STARTS:
            reason = f"started {trial.get('starts')} times without being marked good"
        elif now_ms > int(trial.get("deadline_ms", 0)):
            reason = "not marked good before its deadline"
        elif not is_installed(root, version):
            reason = "trial release is not installed"
        if reason is not None and back and is_installed(root, back):
            state = abandon(root, state, str(back), reason, args)
        elif reason is None:
            if not int(trial.get("starts", 0)) and back:
                snapshot_config(root, str(back), args)
            trial["starts"] = int(trial.get("starts", 0)) + 1
            write_state(root, state)
            _log("trial_start", release=version, start=trial["starts"], max=MAX_TRIAL_STARTS)
    target = (state.get("trial") or {}).get("version") or state.get("good")
    if not is_installed(root, target):
        target = current_release(root)  # last resort: whatever current names
        if not is_installed(root, target):
            return None
    assert target is not None
    if current_release(root) != target:
        switch_current(root, target)
    return target


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) < 3 or argv[0] != "--root" or argv[2] != "--":
        print("usage: launcher.py --root DIR -- COLLECTOR-ARGS...", file=sys.stderr)
        return 2
    root, args = Path(argv[1]), argv[3:]
    release = choose(root, args)
    if release is None:
        _log("no_release", root=str(root))
        return EX_CONFIG
    python = str(release_python(root, release))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["FORECOURT_OTA_ROOT"], env["FORECOURT_RELEASE"] = str(root), release
    # -I: only the release's own venv is on sys.path (never the working directory).
    os.execve(python, [python, "-I", "-m", "collector", *args], env)
    return 1  # not reached


if __name__ == "__main__":
    raise SystemExit(main())
