"""A hostile bundle is refused at unpack, before anything is installed (SPEC D8).

Bundles crafted with tarfile: path traversal, links, members the manifest
does not list or lists with another SM3, a wrong version. collector/ota/bundle.py.
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

from collector.ota.bundle import BundleError, unpack
from uplink.crypto import sm3_hex as sm3

WHEEL = b"PK\x03\x04 not really a wheel, only bytes to hash"


def bundle(
    path: Path, members: list[tarfile.TarInfo | tuple[str, bytes]], **manifest: object
) -> Path:
    files = [
        {"path": m[0], "size": len(m[1]), "sm3": sm3(m[1])} for m in members if isinstance(m, tuple)
    ]
    body = {"format": 1, "name": "forecourt-collector", "version": "1.1.0", "python": "cp311",
            "store_schema": 3, "files": files, **manifest}  # fmt: skip
    with tarfile.open(path, "w") as tar:
        for name, data in [("manifest.json", json.dumps(body).encode())] + [
            m for m in members if isinstance(m, tuple)
        ]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for m in members:
            if isinstance(m, tarfile.TarInfo):
                tar.addfile(m)
    return path


def test_a_good_bundle_unpacks_with_its_manifest(tmp_path: Path) -> None:
    path = bundle(tmp_path / "b.tar", [("wheels/x-1.0-py3-none-any.whl", WHEEL)])
    manifest = unpack(path, tmp_path / "out", "1.1.0")
    assert manifest["version"] == "1.1.0"
    assert (tmp_path / "out" / "wheels" / "x-1.0-py3-none-any.whl").read_bytes() == WHEEL


@pytest.mark.parametrize(
    "name",
    ["../evil.whl", "wheels/../../evil.whl", "/etc/evil.whl", "wheels/x.py", "wheels/a/b.whl"],
)
def test_a_member_outside_wheels_is_refused(tmp_path: Path, name: str) -> None:
    path = bundle(tmp_path / "b.tar", [(name, WHEEL)])
    with pytest.raises(BundleError) as refused:
        unpack(path, tmp_path / "out")
    assert refused.value.code == "BAD_BUNDLE"
    assert not (tmp_path / "evil.whl").exists()


def test_links_unlisted_members_and_wrong_digests_are_refused(tmp_path: Path) -> None:
    link = tarfile.TarInfo("wheels/link.whl")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    good = ("wheels/x-1.0-py3-none-any.whl", WHEEL)
    cases = {
        "link": bundle(tmp_path / "1.tar", [good, link]),
        "version": bundle(tmp_path / "2.tar", [good], version="9.9.9"),
        "digest": bundle(
            tmp_path / "3.tar",
            [good],
            files=[{"path": good[0], "size": len(WHEEL), "sm3": "0" * 64}],
        ),
        "missing": bundle(
            tmp_path / "4.tar",
            [good],
            files=[
                {"path": good[0], "size": len(WHEEL), "sm3": sm3(WHEEL)},
                {"path": "wheels/y-1.0-py3-none-any.whl", "size": 1, "sm3": "0" * 64},
            ],
        ),
    }
    for what, path in cases.items():
        with pytest.raises(BundleError) as refused:
            unpack(path, tmp_path / f"out-{what}", "1.1.0")
        assert refused.value.code == "BAD_BUNDLE", what
