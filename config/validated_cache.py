"""The validated config kept between starts: an unchanged config starts without pydantic.

``forecourt run`` validates the file with the pydantic models before it execs
the daemon (config/handoff.py). On the gateway that step is most of the
start: importing pydantic and the models took 4.8 s of a 5–8 s start on the
emulated Cortex-A7 and peaks at ≈ 18 MB beside nothing else
(docs/performance.md, "The gateway"), and the file rarely changes between
two starts. So the validated hand-off (the views and the version) is kept in
the unit's cache directory under a key of everything the validation reads:

- the config file's bytes and the ``--set`` overrides, in order;
- the release: its version and the interpreter (pickle format, ``sys.version``);
- the working directory (a config's relative paths are relative to it);
- the validating code: size and mtime of every ``config/*.py`` and the
  mtime of site-packages (an installed driver plugin changes the protocol
  names a port may use).

A start whose key matches reads the hand-off and never imports pydantic; any
other start validates as before and replaces the entry (one entry: one
config at a time). An entry is the SHA-256 of the hand-off, then the
hand-off: a pickle, as the hand-off through the memfd is. It is read only
from a directory this user owns and others cannot write (the unit's
``CacheDirectory=forecourt``, mode 0700), and only when the file is this
user's and writable by no one else: a file anyone else could have written
is ignored and validated afresh. No cache directory
(``$CACHE_DIRECTORY`` unset: tests, a development run) means no cache.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
import sys
import sysconfig
import tempfile
from collections.abc import Sequence
from pathlib import Path

#: systemd sets it for ``CacheDirectory=`` (``:``-separated when several).
CACHE_ENV = "CACHE_DIRECTORY"
PREFIX = "validated-"
DIGEST_BYTES = 32
SUFFIX = ".pickle"
#: A hand-off is a few KiB (32 ports: ≈ 40 KiB); a larger file is not ours.
MAX_ENTRY_BYTES = 4 * 1024 * 1024

_CONFIG_PACKAGE = Path(__file__).resolve().parent


def directory() -> Path | None:
    """The cache directory systemd made for the unit, or None (no cache)."""
    value = os.environ.get(CACHE_ENV, "").split(":")[0]
    return Path(value) if value else None


def code_stamp() -> str:
    """What identifies the validating code without reading it."""
    # The working directory: relative paths in a config are relative to it.
    parts = [sys.version, os.getcwd()]
    for source in sorted(_CONFIG_PACKAGE.glob("*.py")):
        st = source.stat()
        parts.append(f"{source.name}:{st.st_size}:{st.st_mtime_ns}")
    with contextlib.suppress(OSError):
        parts.append(f"site:{Path(sysconfig.get_paths()['purelib']).stat().st_mtime_ns}")
    return "\n".join(parts)


def key(config_bytes: bytes, overrides: Sequence[str], version: str) -> str:
    digest = hashlib.sha256()
    parts = (config_bytes, "\0".join(overrides).encode(), version.encode(), code_stamp().encode())
    for part in parts:
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


def load(where: Path, entry_key: str) -> bytes | None:
    """The hand-off kept under ``entry_key``, or None (absent, or not trusted)."""
    path = where / f"{PREFIX}{entry_key}{SUFFIX}"
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        trusted = (
            stat.S_ISREG(st.st_mode)
            and st.st_uid == os.geteuid()
            and not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
            and st.st_size <= MAX_ENTRY_BYTES
            and _directory_trusted(where)
        )
        data = f.read() if trusted else b""
    # The file begins with the SHA-256 of the rest: a write cut short by a
    # power loss (a zero-length or torn file) reads as absent, not as a
    # hand-off the daemon would choke on.
    digest, payload = data[:DIGEST_BYTES], data[DIGEST_BYTES:]
    if len(digest) < DIGEST_BYTES or hashlib.sha256(payload).digest() != digest:
        return None
    return payload


def _directory_trusted(where: Path) -> bool:
    try:
        st = where.stat()
    except OSError:
        return False
    return st.st_uid == os.geteuid() and not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


def store(where: Path, entry_key: str, payload: bytes) -> Path | None:
    """Keep ``payload`` under ``entry_key`` (atomic, 0600) and drop every other
    entry. A cache that cannot be written costs the next start its speed only:
    None, never an error."""
    if not _directory_trusted(where):
        return None
    path = where / f"{PREFIX}{entry_key}{SUFFIX}"
    try:
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=where)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(hashlib.sha256(payload).digest() + payload)
            os.chmod(tmp, 0o600)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        for old in where.glob(f"{PREFIX}*{SUFFIX}"):
            if old != path:
                with contextlib.suppress(OSError):
                    old.unlink()
    except OSError:
        return None
    return path
