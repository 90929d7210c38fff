"""Release bundles: the signed statement, the manifest, a checked unpack.

A bundle (scripts/build-bundle; docs/upgrade.md) is an uncompressed tar —
the wheels are compressed already — holding ``manifest.json`` first and then
``wheels/*.whl``: the project's wheel and every dependency's (installed by
collector/ota/wheels.py, so a release venv needs no pip). The manifest::

    {"format": 1, "name": "forecourt-collector", "version": "0.2.0",
     "python": "cp311", "platform": "linux-armv7l", "store_schema": 3,
     "files": [{"path": "wheels/x.whl", "size": 123, "sm3": "<64 hex>"}, ...]}

``platform`` and ``python`` say which devices the bundle fits
(collector/ota/fit.py): :func:`check_fits` refuses any other
(``WRONG_PLATFORM``) right after the manifest is read, before a wheel is
written, and also refuses a wheel whose own platform tag names another
machine (a bundle from before ``platform`` existed is judged by its wheels).

The release key signs :func:`signed_statement` — the version, the size and
the SM3 of the whole bundle file — so the ``ota.upgrade`` ``sig`` is checked
before a byte is downloaded, and the SM3 binds every byte after.
"""

from __future__ import annotations

import json
import re
import tarfile
from pathlib import Path, PurePosixPath
from typing import IO, Any

from collector.ota.fit import machine_arch, machine_platform, python_tag
from records.sm3 import Sm3Stream

MANIFEST = "manifest.json"
FORMAT = 1
NAME = "forecourt-collector"

#: A manifest is a few KiB (one line per wheel); 256 KiB bounds its parse.
MAX_MANIFEST_BYTES = 256 * 1024
#: Members of a bundle: ~30 wheels today; 500 bounds a hostile tar's listing.
MAX_MEMBERS = 500
#: Read size when hashing: small enough for a 64 MB box, large enough to be fast.
CHUNK_BYTES = 64 * 1024

VERSION_RE = re.compile(r"[0-9][0-9A-Za-z.+_-]{0,63}")
_WHEEL_RE = re.compile(r"wheels/[A-Za-z0-9._+-]{1,200}\.whl")


class BundleError(Exception):
    """A bundle refused; ``code`` is the reply's error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def signed_statement(version: str, size: int, sm3_hex: str) -> bytes:
    """What the release key signs (docs/uplink-protocol.md ``ota.upgrade``)."""
    return f"forecourt-bundle|v1|{version}|{size}|{sm3_hex.lower()}".encode("ascii")


def sm3_file(path: Path) -> str:
    digest = Sm3Stream()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def _safe_name(name: str) -> str:
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts or name != str(path):
        raise BundleError("BAD_BUNDLE", f"member {name!r} escapes the bundle")
    if name != MANIFEST and not _WHEEL_RE.fullmatch(name):
        raise BundleError("BAD_BUNDLE", f"member {name!r} is not a wheel")
    return name


def read_manifest(tar: tarfile.TarFile) -> dict[str, Any]:
    member = tar.next()
    if member is None or member.name != MANIFEST or not member.isfile():
        raise BundleError("BAD_BUNDLE", f"{MANIFEST} must be the first member")
    if member.size > MAX_MANIFEST_BYTES:
        raise BundleError("BAD_BUNDLE", f"{MANIFEST} larger than {MAX_MANIFEST_BYTES} bytes")
    f = tar.extractfile(member)
    assert f is not None
    try:
        manifest = json.loads(f.read())
    except ValueError:
        raise BundleError("BAD_BUNDLE", f"{MANIFEST} is not JSON") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BundleError("BAD_BUNDLE", f"{MANIFEST}: format {FORMAT} expected")
    if manifest.get("name") != NAME or not VERSION_RE.fullmatch(str(manifest.get("version"))):
        raise BundleError("BAD_BUNDLE", f"{MANIFEST}: not a {NAME} release")
    files = manifest.get("files")
    if not isinstance(files, list) or not files or len(files) > MAX_MEMBERS:
        raise BundleError("BAD_BUNDLE", f"{MANIFEST}: files must list 1-{MAX_MEMBERS} wheels")
    return manifest


def wheel_platforms(name: str) -> list[str]:
    """A wheel file name's platform tags (``x-1.0-cp311-abi3-manylinux_2_31_armv7l.whl``
    → ``["manylinux_2_31_armv7l"]``; compressed sets split on ``.``)."""
    parts = PurePosixPath(name).name.removesuffix(".whl").split("-")
    return parts[-1].split(".") if len(parts) >= 5 else []


def check_fits(
    manifest: dict[str, Any], platform: str | None = None, python: str | None = None
) -> None:
    """Refuse (``WRONG_PLATFORM``) a bundle built for another machine or python.

    ``platform`` / ``python``: this device's (collector/ota/fit.py) unless given."""
    platform = machine_platform() if platform is None else platform
    python = python_tag() if python is None else python
    built_for = manifest.get("platform")
    if built_for is not None and built_for != platform:
        raise BundleError(
            "WRONG_PLATFORM",
            f"bundle {manifest.get('version')} is built for {built_for}, this device is"
            f" {platform} (build it with scripts/build-bundle --platform {platform})",
        )
    if manifest.get("python") not in (None, python):
        raise BundleError(
            "WRONG_PLATFORM",
            f"bundle {manifest.get('version')} is built for python {manifest.get('python')},"
            f" this device runs {python}",
        )
    arch = machine_arch(platform)
    for entry in manifest["files"]:
        tags = wheel_platforms(str(entry.get("path") if isinstance(entry, dict) else ""))
        if tags and "any" not in tags and not any(t.endswith(f"_{arch}") for t in tags):
            raise BundleError(
                "WRONG_PLATFORM", f"{entry['path']} is built for {tags[0]}, not {platform}"
            )


def unpack(bundle: Path, into: Path, expect_version: str | None = None) -> dict[str, Any]:
    """Unpack ``bundle`` into ``into`` (created), checking every member.

    Refused (``BAD_BUNDLE``): anything but regular files named ``wheels/*.whl``
    (no links, devices, directories, absolute or ``..`` paths), a member not
    in the manifest or listed twice, a size or SM3 that differs from the
    manifest's, a listed file missing, a version other than ``expect_version``.
    Files are written by this code (never ``tar.extract``), so a hostile
    member's mode or owner never applies. Returns the manifest.
    """
    into.mkdir(parents=True, exist_ok=False)
    with tarfile.open(bundle, "r:") as tar:
        manifest = read_manifest(tar)
        if expect_version is not None and manifest["version"] != expect_version:
            raise BundleError(
                "BAD_BUNDLE", f"bundle holds {manifest['version']}, not {expect_version}"
            )
        check_fits(manifest)
        listed = {str(f.get("path")): f for f in manifest["files"] if isinstance(f, dict)}
        seen: set[str] = set()
        for count, member in enumerate(tar):
            if count == 0:
                continue  # the manifest, read above (iteration starts over)
            if count > MAX_MEMBERS:
                raise BundleError("BAD_BUNDLE", f"more than {MAX_MEMBERS} members")
            name = _safe_name(member.name)
            if not member.isfile():
                raise BundleError("BAD_BUNDLE", f"member {name!r} is not a regular file")
            entry = listed.get(name)
            if entry is None or name in seen:
                raise BundleError("BAD_BUNDLE", f"member {name!r} not in the manifest, or twice")
            if member.size != entry.get("size"):
                raise BundleError("BAD_BUNDLE", f"{name}: size differs from the manifest")
            source = tar.extractfile(member)
            assert source is not None
            _copy_checked(source, into / name, str(entry.get("sm3")), name)
            seen.add(name)
        missing = sorted(set(listed) - seen)
        if missing:
            raise BundleError("BAD_BUNDLE", f"manifest lists files not in the bundle: {missing}")
    return manifest


def _copy_checked(source: IO[bytes], target: Path, sm3_hex: str, name: str) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    digest = Sm3Stream()
    with open(target, "xb") as out:
        while chunk := source.read(CHUNK_BYTES):
            digest.update(chunk)
            out.write(chunk)
    if digest.hexdigest() != sm3_hex.lower():
        raise BundleError("BAD_BUNDLE", f"{name}: SM3 differs from the manifest")
