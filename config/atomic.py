"""One way to write a file so that a SIGKILL or a power cut leaves it old or new.

Every file the collector writes whole goes through :func:`write_atomically`:
the config and its ``.prev`` / ``.pending`` / ``.reverted``, the key file and
its rotation marker, the OTA state and release markers, the web password
hash, the run marker. The steps, and why each is there:

1. a temporary file in the **same directory** (``.<name>.<random>.new``):
   a rename is atomic only within one filesystem;
2. the owner and mode set on it before any byte: when root writes, the
   owner asked for (config/filemodes.py: the service user) else the
   replaced file's; the mode asked for, else the replaced file's, else
   0600 — a key or a password hash is never readable by others, not even
   for a moment, and never left to root where the daemon must read it;
3. every byte written, then ``fsync`` of the file: its data is on flash
   before its name can point at it (ext4 and UBIFS may otherwise commit the
   rename first, and a power cut leaves an empty file under the old name);
4. ``rename`` over the target: a reader sees the old file or the new, never
   a mix;
5. ``fsync`` of the directory: the rename itself is on flash, so a power cut
   after :func:`write_atomically` returned cannot bring the old file back.

A kill between 1 and 4 leaves the target as it was and a temporary file,
which is never read: the next write of the same file removes it once it is
older than :data:`STALE_TEMP_S` (a younger one may be another writer's, mid-way).
tests/test_atomic_write.py kills a child at each step and finds the old or
the new content, never a torn or empty file.

The release launcher (collector/ota/launcher.py) cannot import this module —
it must run when a release cannot even be imported — so it carries a copy of
the block between the ``atomic write`` markers below; the test checks that
the two copies are the same text.

Standard library only, no project imports: every layer may import it.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

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
