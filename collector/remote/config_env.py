"""What a config names outside itself, checked in the step that validates it.

The models (config/models*.py) judge the file's own text; a start also needs
what the text points at. ``forecourt config check`` and ``forecourt run``
check both in one step (collector/cli.py), and the web page's editor runs
``config check``, so a config ``check`` accepts is one ``run`` can use. Every
problem is one ``key.path: reason`` line, like the models' own:

* ``uplink.keys_file`` — owner-only, loads, holds ``uplink.kid``;
* ``uplink.device_key_file``, ``uplink.platform_public_key_file``,
  ``ota.release_public_key_file`` — load (platform commands, upgrades);
* ``store.path`` — absent (its directory can be made), empty, or one of our
  stores of a schema this release reads (buffer/schema.py): never another
  program's file, e.g. the config itself;
* a port's ``device`` / ``pos_device`` and the gauge's ``device`` — when
  present, a character device; a seal's ``value`` a regular file.

Not refused, because the daemon runs on without them and says so: a device
that is missing (an adapter plugged later: PORT_OFFLINE, retried), a password
file not set yet (the page says how), a control socket or web address that
cannot be bound (logged; collecting goes on), a damaged store of ours (moved
aside and alarmed, docs/store.md).
"""

from __future__ import annotations

import os
import sqlite3
import stat
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from config.models import Config


def config_errors(
    path: Path, overrides: Sequence[str], raw: bytes | None = None
) -> Config | list[str]:
    """The config if a start can use it, else its ``key.path: reason`` lines:
    the models first, then what it names outside itself (files, devices, the
    store) — only once the models accept it, as those checks read its values.
    ``raw``: the file's bytes when already read (validated as they are).
    ``forecourt config check``, ``run`` and ``detect --write`` ask it."""
    from config.loader import ConfigError, config_from_data, load_config, parse_toml_bytes

    try:
        if raw is None:
            config = load_config(path, overrides)
        else:
            config = config_from_data(parse_toml_bytes(raw, path), overrides)
    except ConfigError as exc:
        return exc.errors
    return check_environment(config) or config


def check_environment(config: Config) -> list[str]:
    """The ``key.path: reason`` lines of everything ``config`` names that a
    start could not use (empty: it can start)."""
    errors = _keys(config)
    if line := _store(config.store.path):
        errors.append(f"store.path: {line}")
    for index, port in enumerate(config.ports):
        for key in ("device", "pos_device"):
            device = getattr(port, key)
            if device is not None and (line := _device(device)):
                errors.append(f"ports.{index}.{key}: {line}")
    gauge = config.gauge
    serial_gauge = gauge.enabled and gauge.link == "serial" and gauge.device is not None
    if serial_gauge and gauge.device is not None and (line := _device(gauge.device)):
        errors.append(f"gauge.device: {line}")
    for index, seal in enumerate(config.seals):
        if line := _not_regular(seal.value):
            errors.append(f"seals.{index}.value: {line}")
    return errors


def _keys(config: Config) -> list[str]:
    from uplink.keys import (
        KeyFileError,
        check_owner_only,
        load_keys,
        load_sm2_pair,
        load_sm2_public,
    )

    errors: list[str] = []
    u = config.uplink
    try:
        check_owner_only(u.keys_file)
        keys = load_keys(u.keys_file)
    except KeyFileError as exc:
        errors.append(f"uplink.keys_file: {exc}")
    else:
        if u.kid not in keys:
            errors.append(f"uplink.kid: no key {u.kid!r} in {u.keys_file}")
    loaders = (
        ("uplink.device_key_file", u.device_key_file, load_sm2_pair),
        ("uplink.platform_public_key_file", u.platform_public_key_file, load_sm2_public),
        ("ota.release_public_key_file", config.ota.release_public_key_file, load_sm2_public),
    )
    for key, path, load in loaders:
        if path is None:
            continue
        try:
            load(path)
        except KeyFileError as exc:
            errors.append(f"{key}: {exc}")
    return errors


def _store(path: Path) -> str | None:
    """Why the daemon could not open a store at ``path`` (None: it can)."""
    from buffer.schema import StoreError, header_is_ours, store_version

    if not path.exists():
        return _creatable(path)
    if not path.is_file():
        return f"{path}: not a regular file (a store is one SQLite file)"
    if not os.access(path.parent, os.W_OK | os.X_OK):
        return f"{path.parent}: cannot write here (the store's journal lives beside it)"
    if path.stat().st_size == 0:
        return None  # created, nothing in it yet: the daemon makes the store
    try:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=1.0)
    except sqlite3.Error as exc:
        return f"{path}: cannot open: {exc}"
    try:
        store_version(db, path)
    except StoreError as exc:
        return str(exc)
    except sqlite3.DatabaseError as exc:
        if isinstance(exc, sqlite3.OperationalError) or not header_is_ours(path):
            return f"{path}: not a collector store ({exc}); left as it is"
        # Ours and damaged: the daemon moves it aside and alarms STORE_CORRUPT.
    finally:
        db.close()
    return None


def _creatable(path: Path) -> str | None:
    """The daemon makes the store's missing directories: can it?"""
    ancestor = path.parent
    while not ancestor.exists():
        if ancestor == ancestor.parent:
            break
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        return f"{path}: {ancestor} is not a directory"
    if not os.access(ancestor, os.W_OK | os.X_OK):
        return f"{path}: cannot create it ({ancestor} is not writable)"
    return None


def _device(device: str) -> str | None:
    try:
        mode = os.stat(device).st_mode
    except FileNotFoundError:
        return None  # not plugged in yet: the port starts offline and retries
    except OSError as exc:
        return f"{device}: {exc.strerror or exc}"
    if not stat.S_ISCHR(mode):
        return f"{device}: not a serial device (a character device)"
    return None


def _not_regular(path: Path) -> str | None:
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return None  # a seal input not exported yet: SEAL_OFFLINE, read again
    except OSError as exc:
        return f"{path}: {exc.strerror or exc}"
    if not stat.S_ISREG(mode):
        return f"{path}: not a regular file (a sysfs value file)"
    return None
