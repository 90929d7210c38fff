"""Who owns a file the collector's service reads, and with which mode.

The daemon runs as its own user (systemd/forecourt-collector.service:
``User=forecourt``, ``UMask=0077``); the installer and the technician run the
CLI as root. A file root writes for the service — the web password hash, a
key file, a release — must end up the service user's: a 0600 file owned by
root is one the daemon cannot read (the web page then says no password is
set, and nobody can log in). The owner is read from what is already there,
not configured a second time (:func:`owner_for`):

1. the user named on the command line (``--user NAME``);
2. the owner of the file being replaced, when that is not root (root edits
   the daemon's file);
3. the owner of its directory, when that is not root (``/var/lib/forecourt``
   is the service user's from the unit's first start, systemd's
   ``StateDirectory=``; ``/etc/forecourt`` is given to it before each start);
4. the user :data:`SERVICE_USER` when the system has one (an install before
   the unit ever ran).

Otherwise the file stays root's (a development machine without that user).
A command run by anyone but root writes its own files: it can give them to
no one else, and the daemon run as a user writes its own.

Files the daemon creates are owner-only whatever umask it was started with:
it sets :data:`DAEMON_UMASK` (the unit's ``UMask=``) first thing, and the
store is created with :func:`create_private` before SQLite opens it (SQLite
gives the ``-wal`` and ``-shm`` files the database file's mode).

Standard library only, no project imports: every layer may import it.
"""

from __future__ import annotations

import os
import pwd
from pathlib import Path

#: The unit's ``User=`` (systemd/forecourt-collector.service).
SERVICE_USER = "forecourt"
#: The unit's ``UMask=``: set by the daemon itself too, so a start by hand
#: (root's usual 022) creates nothing others can read.
DAEMON_UMASK = 0o077
#: Mode of a file the daemon creates: owner only (the store, its WAL and
#: shared memory, the command replay log, markers, keys).
PRIVATE_MODE = 0o600


class NoSuchUser(ValueError):
    """``--user NAME`` names no user of this system."""


def user_ids(name: str) -> tuple[int, int]:
    """``(uid, gid)`` of user ``name`` (its primary group)."""
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise NoSuchUser(f"no such user: {name}") from None
    return entry.pw_uid, entry.pw_gid


def owner_for(path: Path, user: str | None = None) -> tuple[int, int] | None:
    """``(uid, gid)`` a file written at ``path`` is given to, or None to leave
    it to whoever writes it (not root, or no service user to be found)."""
    if os.geteuid() != 0:
        return None
    if user is not None:
        return user_ids(user)
    path = Path(path)
    for candidate in (path, path.parent):
        try:
            st = os.stat(candidate)
        except FileNotFoundError:
            continue
        if st.st_uid != 0:
            return st.st_uid, st.st_gid
    try:
        return user_ids(SERVICE_USER)
    except NoSuchUser:
        return None


def give_tree(top: Path, owner: tuple[int, int]) -> None:
    """Give ``top`` and everything under it to ``owner`` (symbolic links
    themselves, never what they point at), as systemd does for a
    ``StateDirectory=`` whose owner is not the service user."""
    os.lchown(top, *owner)
    for parent, dirs, files in os.walk(top):
        for name in (*dirs, *files):
            os.lchown(os.path.join(parent, name), *owner)


def create_private(path: Path) -> bool:
    """Create ``path`` empty with :data:`PRIVATE_MODE` whatever the umask;
    False when it exists already (left as it is)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW
    try:
        fd = os.open(path, flags, PRIVATE_MODE)
    except FileExistsError:
        return False
    try:
        os.fchmod(fd, PRIVATE_MODE)  # the umask may have taken bits from O_CREAT's mode
    finally:
        os.close(fd)
    return True
