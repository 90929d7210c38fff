"""The one atomic file write (config/atomic.py): old or new content, never torn.

A child process writes a file through :func:`config.atomic.write_atomically`
with every system call that changes the disk (open, fchmod, write, fsync,
close, rename, unlink) traced, and SIGKILLs itself just before the n-th of
them, for every n until the write completes. Writes are cut to half their
size, so there is a kill between two halves of the data too. After each kill
the file holds the old content (or is absent, when there was none) or the
new one, never an empty or a half-written file. The order of the steps is
what makes a power cut safe as well (data fsynced before the rename, the
directory fsynced after it): the completed run's trace is checked for it.

Also here: the mode kept or set (0600 for secrets), leftovers of killed
writes removed, the launcher's copy of the helper identical to this one, and
no other way of writing a file in the product's code.
"""

from __future__ import annotations

import ast
import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from config import atomic

ROOT = Path(__file__).resolve().parent.parent
OLD = b"[device]\nid = 'old'\n" * 40
NEW = b"[device]\nid = 'new, and longer than the old one'\n" * 1500  # ~64 KiB

CHILD = r"""
import json, os, signal, sys
from pathlib import Path
from config import atomic

target, source, kill_at = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
mode = None if sys.argv[4] == "keep" else int(sys.argv[4], 8)
data = source.read_bytes()
steps = []

def traced(name, real):
    def call(*args, **kwargs):
        if len(steps) == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        what = args[0] if name in ("open", "rename", "unlink") else None
        if name == "write":  # half at most: a torn temp file is one kill away
            args = (args[0], args[1][: max(1, len(args[1]) // 2)])
        steps.append([name, str(what) if what is not None else None])
        return real(*args, **kwargs)
    return call

for name in ("open", "fchmod", "fchown", "write", "fsync", "close", "rename", "unlink"):
    setattr(os, name, traced(name, getattr(os, name)))
atomic.write_atomically(target, data, mode=mode)
sys.stdout.write(json.dumps(steps))
"""


def run_child(target: Path, source: Path, kill_at: int, mode: str = "keep") -> tuple[int, str]:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(target), str(source), str(kill_at), mode],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    return done.returncode, done.stdout


@pytest.mark.parametrize("existed", [True, False], ids=["replacing", "creating"])
def test_a_kill_at_every_step_leaves_the_old_or_the_new_file(tmp_path: Path, existed: bool) -> None:
    target, source = tmp_path / "station.toml", tmp_path / "source.bin"
    source.write_bytes(NEW)
    outcomes: list[str] = []
    for kill_at in range(200):
        if existed:
            target.write_bytes(OLD)
        else:
            target.unlink(missing_ok=True)
        rc, out = run_child(target, source, kill_at)
        if rc == 0:
            assert target.read_bytes() == NEW
            steps = json.loads(out)
            break
        assert rc == -signal.SIGKILL, f"step {kill_at}: exit {rc}"
        if target.exists():
            content = target.read_bytes()
            assert content in (OLD, NEW), f"killed before step {kill_at}: torn ({len(content)} B)"
            outcomes.append("old" if content == OLD and existed else "new")
        else:
            assert not existed, f"killed before step {kill_at}: the file is gone"
            outcomes.append("old")
    else:
        pytest.fail("the write never completed")
    # Every step was a place to die, and both contents were seen: old up to
    # the rename, new from it on.
    assert len(outcomes) == len(steps) >= 10
    first_new = outcomes.index("new")
    assert set(outcomes[:first_new]) == {"old"} and set(outcomes[first_new:]) == {"new"}
    names = [name for name, _ in steps]
    assert steps[first_new - 1][0] == "rename", "the content changes at the rename, not before"
    # The order that makes a power cut safe too.
    temp = Path(steps[0][1])
    assert names[0] == "open" and temp.parent == tmp_path, "the temp file is in the same directory"
    assert temp.name.startswith(".station.toml.") and temp.name.endswith(".new")
    assert names.count("write") >= 2, "the data was written in halves: a torn temp was possible"
    rename = names.index("rename")
    assert "fsync" in names[:rename] and names[names.index("fsync") - 1] == "write"
    assert names[rename + 1 :] == ["open", "fsync", "close"], "the directory fsynced after"
    assert steps[rename + 1][1] == str(tmp_path)


def test_leftover_temp_files_of_killed_writes_are_removed_once_stale(tmp_path: Path) -> None:
    target = tmp_path / "keys.toml"
    stale, fresh = tmp_path / ".keys.toml.0a1b2c.new", tmp_path / ".keys.toml.3d4e5f.new"
    other = tmp_path / ".other.toml.0a1b2c.new"
    for path in (stale, fresh, other):
        path.write_bytes(b"half")
    an_hour_ago = time.time() - atomic.STALE_TEMP_S - 5
    os.utime(stale, (an_hour_ago, an_hour_ago))
    os.utime(other, (an_hour_ago, an_hour_ago))
    atomic.write_atomically(target, b"k1 = '00'\n")
    assert not stale.exists(), "a killed write's leftover goes at the next write"
    assert fresh.exists(), "a young one may be another writer's, mid-way"
    assert other.exists(), "only this file's temps"
    assert target.read_bytes() == b"k1 = '00'\n"


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_modes_kept_set_and_secret_by_default(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_bytes(OLD)
    config.chmod(0o640)
    atomic.write_atomically(config, NEW)
    assert mode_of(config) == 0o640, "the replaced file's mode is kept"
    fresh = tmp_path / "ota-state.json"
    atomic.write_atomically(fresh, b"{}")
    assert mode_of(fresh) == atomic.NEW_FILE_MODE == 0o600
    keys = tmp_path / "keys.toml"
    keys.write_bytes(b"k = '00'\n")
    keys.chmod(0o644)
    atomic.write_atomically(keys, b"k = '01'\n", mode=0o600)
    assert mode_of(keys) == 0o600, "a secret is 0600 whatever the file was"


def test_a_secret_is_never_readable_by_others_mid_write(tmp_path: Path) -> None:
    """Killed right after the temp file's creation: it is already 0600."""
    target, source = tmp_path / "web-password", tmp_path / "source.bin"
    source.write_bytes(b"scrypt$...\n")
    rc, _ = run_child(target, source, 1, mode="644")  # killed before the fchmod
    assert rc == -signal.SIGKILL
    [temp] = [p for p in tmp_path.iterdir() if p.name.startswith(".web-password.")]
    assert mode_of(temp) == 0o600


def test_the_product_writers_keep_their_modes(tmp_path: Path) -> None:
    from collector.web.auth import write_hash_file
    from uplink.device_commands import KeyRing

    password = tmp_path / "web-password"
    password.write_text("old\n")
    password.chmod(0o644)
    write_hash_file(password, "pump-island-7")
    assert mode_of(password) == 0o600
    key_file = tmp_path / "keys.toml"
    key_file.write_text('k1 = "' + "00" * 16 + '"\n')
    key_file.chmod(0o600)
    ring = KeyRing(key_file, {"k1": bytes(16)}, "k1")
    ring.rotate("k2", bytes(range(16)))
    assert mode_of(key_file) == 0o600 and "k2" in key_file.read_text()
    assert KeyRing.current_path(key_file).read_text() == "k2\n"


def atomic_block(path: Path) -> str:
    text = path.read_text()
    begin = text.index("# --- atomic write: begin")
    return text[begin : text.index("# --- atomic write: end", begin)]


def test_the_launcher_carries_the_same_helper() -> None:
    """collector/ota/launcher.py imports nothing of the project (it judges a
    release that may not import): its copy must stay this very text."""
    ours = atomic_block(ROOT / "config" / "atomic.py")
    assert "def write_atomically" in ours
    assert atomic_block(ROOT / "collector" / "ota" / "launcher.py") == ours


#: Files the product writes other than through config/atomic.py, and why.
NOT_ATOMIC = {
    # sysfs attributes: not files on flash, nothing to tear.
    "collector/device/leds.py": "write_text",
    # The config check's input for a child, removed after it (never read again).
    "collector/remote/config_check.py": "mkstemp",
    # detect --write checks its merged config the same way before the atomic write.
    "collector/detect/write.py": "mkstemp",
    # Wheels unpacked into a release's venv: install.py syncs them all before
    # the markers (release.json, INSTALLED: atomic) that declare the release whole.
    "collector/ota/wheels.py": "open write_text",
    # Bundle members in a staging directory, each checked against its SM3 and
    # removed after the install.
    "collector/ota/bundle.py": "open",
    # A resumable download, appended to; verified by its SM3, then
    # config.atomic.replace_durably.
    "collector/ota/download.py": "open",
    # The launcher's symlink switch: a new link renamed over ``current``, then
    # the directory fsynced (a symlink has no data to write).
    "collector/ota/launcher.py": "os.replace",
    # A corrupt store moved aside (a rename of a whole file, not a write).
    "buffer/schema.py": "rename",
    # The config handed to the daemon through an inherited pipe.
    "config/handoff.py": "open",
    # Test points' trace: counters in a shared mapping, for tests only.
    "config/testpoints.py": "os.open",
    # An empty store or replay log made owner-only before SQLite opens it
    # (SQLite writes it, and gives its -wal and -shm the same mode).
    "config/filemodes.py": "os.open",
}

WRITE_MODES = ("w", "a", "x", "+")


def file_writes(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, what) of every call that creates or writes a file."""
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func, owner = node.func, ""
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
            owner = func.value.id
        if name in ("write_text", "write_bytes", "mkstemp", "NamedTemporaryFile", "rename"):
            found.append((node.lineno, name))
        elif owner == "os" and name in ("replace", "rename"):
            found.append((node.lineno, f"os.{name}"))
        elif name == "open" and owner != "os":
            modes = [a for a in node.args[1:2] if isinstance(a, ast.Constant)]
            modes += [k.value for k in node.keywords if k.arg == "mode"]  # type: ignore[misc]
            text = "".join(str(getattr(m, "value", "")) for m in modes)
            if any(c in text for c in WRITE_MODES):
                found.append((node.lineno, "open"))
        elif owner == "os" and name == "open" and "O_CREAT" in ast.dump(node):
            found.append((node.lineno, "os.open"))
    return found


def in_atomic_block(text: str, line: int) -> bool:
    """Inside the launcher's copy of the helper (checked above to be the same text)."""
    lines = text.splitlines()
    begins = [i for i, t in enumerate(lines, 1) if t.startswith("# --- atomic write: begin")]
    ends = [i for i, t in enumerate(lines, 1) if t.startswith("# --- atomic write: end")]
    return any(b < line < e for b, e in zip(begins, ends, strict=True))


def test_every_file_the_product_writes_goes_through_the_atomic_write() -> None:
    strays = []
    for package in ("collector", "uplink", "buffer", "config", "protocols", "records"):
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if rel == "config/atomic.py":
                continue
            text = path.read_text()
            allowed = NOT_ATOMIC.get(rel, "").split()
            for line, what in file_writes(ast.parse(text)):
                if what not in allowed and not in_atomic_block(text, line):
                    strays.append(f"{rel}:{line} {what}")
    assert strays == [], "write through config.atomic.write_atomically, or say why not here"
