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

from collector.ota.bundle import BundleError, check_fits, unpack
from collector.ota.fit import machine_platform
from records.sm3 import sm3_hex as sm3

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


# --- bundles for another machine (collector/ota/fit.py) -----------------------
# On the armhf gateway an x86-built bundle got as far as the smoke import
# (ImportError … pydantic_core) and the platform could not tell which bundle
# fits a device: the manifest carries the platform, and the installer refuses
# a bundle for another machine before writing any wheel.

ARM_WHEEL = "wheels/cryptography-51.0.1-cp311-abi3-manylinux_2_31_armv7l.whl"
X86_WHEEL = "wheels/pydantic_core-2.50.5-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"


def test_a_bundle_for_another_platform_is_refused_before_any_wheel(tmp_path: Path) -> None:
    other = "linux-armv7l" if machine_platform() != "linux-armv7l" else "linux-x86_64"
    path = bundle(tmp_path / "b.tar", [(ARM_WHEEL, WHEEL)], platform=other)
    with pytest.raises(BundleError) as refused:
        unpack(path, tmp_path / "out", "1.1.0")
    assert refused.value.code == "WRONG_PLATFORM"
    assert other in str(refused.value) and machine_platform() in str(refused.value)
    assert list((tmp_path / "out").rglob("*")) == [], "nothing unpacked"


def test_the_installer_refuses_it_with_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from collector.ota import install

    path = bundle(tmp_path / "b.tar", [(ARM_WHEEL, WHEEL)], platform="linux-armv7l")
    root = tmp_path / "ota"
    assert install.main(["--root", str(root), str(path)]) == 1
    err = capsys.readouterr().err
    assert "WRONG_PLATFORM" in err and "linux-armv7l" in err
    assert list((root / "releases").iterdir()) == [], "no release directory begun"


@pytest.mark.parametrize(
    ("device", "wheels", "fits"),
    [
        ("linux-armv7l", [ARM_WHEEL, "wheels/x-1.0-py3-none-any.whl"], True),
        ("linux-armv7l", ["wheels/cffi-2.0.0-cp311-cp311-linux_armv7l.whl"], True),
        ("linux-armv7l", [X86_WHEEL], False),
        ("linux-x86_64", [X86_WHEEL], True),
        ("linux-x86_64", [ARM_WHEEL], False),
    ],
)
def test_wheels_are_judged_by_their_own_tags(device: str, wheels: list[str], fits: bool) -> None:
    """A manifest without ``platform`` (built before it existed) is judged by its wheels."""
    manifest = {"version": "1.0", "python": "cp311", "files": [{"path": w} for w in wheels]}
    if fits:
        check_fits(manifest, device, "cp311")
    else:
        with pytest.raises(BundleError) as refused:
            check_fits(manifest, device, "cp311")
        assert refused.value.code == "WRONG_PLATFORM"


def test_a_bundle_for_another_python_is_refused() -> None:
    manifest = {"version": "1.0", "python": "cp312", "platform": "linux-armv7l", "files": []}
    with pytest.raises(BundleError) as refused:
        check_fits(manifest, "linux-armv7l", "cp311")
    assert refused.value.code == "WRONG_PLATFORM" and "cp312" in str(refused.value)
