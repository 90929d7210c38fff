"""armv7l wheels for the dependencies the package registry has none of.

The bundle for the gateway takes every compiled dependency as a binary wheel
for ``linux-armv7l`` (scripts/build-bundle ``--platform``). The registry has
them for cryptography (manylinux_2_31_armv7l) and pydantic-core
(manylinux2014_armv7l) but not for **cffi ≥ 2** (cryptography needs it;
Debian 12's python3-cffi is 1.15) nor **pycryptodomex** (gmssl needs it).
Those two are built here from their source distributions, downloaded on the
host, by pip in the armhf *builder* tree (offline: their build requirements
come from the host too) (hil/gateway/rootfs.py: python3-dev,
build-essential, libffi-dev) under qemu-user: the wheels are what Debian 12's
compiler and python make, for the image's own python. cffi took 36 s and
pycryptodomex 3 min 45 s that way (/work/shared/gateway-measured.md).

The result is cached by the sdists' names and the builder tree's key.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from hil.gateway import rootfs

#: Dependencies without an armv7l wheel on the registry (checked with
#: ``pip download --only-binary=:all: --platform manylinux_2_36_armv7l``).
SOURCE_BUILT = ("cffi", "pycryptodomex")

#: What building them needs (cffi: setuptools ≥ 77; pycryptodomex: setuptools,
#: wheel), fetched on the host as wheels: the chroot builds offline (``--no-index``),
#: so it needs neither the network nor the host's certificate authorities.
BUILD_REQUIREMENTS = ("setuptools", "wheel", "pycparser")

#: pip building pycryptodomex under qemu-user: minutes; a hung build ends.
BUILD_TIMEOUT_S = 3600


def run(argv: list[str], timeout: float = 600, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:6])} … exited {done.returncode}:\n"
                           f"{done.stdout[-2000:]}{done.stderr[-4000:]}")  # fmt: skip
    return str(done.stdout)


@contextlib.contextmanager
def chroot_mounts(root: Path) -> Iterator[Path]:
    """/proc, /dev and the host's resolver inside ``root`` while in use."""
    mounted: list[Path] = []
    try:
        for what, args in (("proc", ["-t", "proc", "proc"]), ("dev", ["--bind", "/dev"])):
            target = root / what
            target.mkdir(exist_ok=True)
            run(["mount", *args, str(target)])
            mounted.append(target)
        resolv = root / "etc" / "resolv.conf"
        resolv.unlink(missing_ok=True)
        shutil.copy("/etc/resolv.conf", resolv)
        yield root
    finally:
        for target in reversed(mounted):
            subprocess.run(["umount", "-l", str(target)], check=False)


def extract(tarball: Path, into: Path) -> Path:
    into.mkdir(parents=True, exist_ok=True)
    run(["tar", "--numeric-owner", "-xpf", str(tarball), "-C", str(into)], timeout=1800)
    return into


def source_wheels(cache: Path | None = None) -> Path:
    """A directory of armv7l wheels for :data:`SOURCE_BUILT` (built when missing)."""
    cache = rootfs.default_cache() if cache is None else cache
    _, builder_key = rootfs.spec("builder")
    with tempfile.TemporaryDirectory(prefix="sdists-") as tmp:
        sdists = Path(tmp)
        run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary=:all:",
             "-d", str(sdists), *SOURCE_BUILT])  # fmt: skip
        names = sorted(p.name for p in sdists.iterdir())
        run([sys.executable, "-m", "pip", "download", "-q", "--only-binary=:all:",
             "-d", str(sdists), *BUILD_REQUIREMENTS])  # fmt: skip
        key = hashlib.sha256("\n".join([builder_key, *names]).encode()).hexdigest()[:16]
        ready = cache / f"wheels-armv7l-{key}"
        if (ready / "COMPLETE").is_file():
            return ready
        builder = rootfs.tarball("builder", cache)
        print(f"gateway: building {', '.join(names)} for armv7l in the builder tree"
              " (qemu-user, minutes)", file=sys.stderr, flush=True)  # fmt: skip
        work = Path(tempfile.mkdtemp(prefix="builder-", dir=cache))
        try:
            root = extract(builder, work / "root")
            (root / "build" / "sdists").mkdir(parents=True)
            for sdist in sdists.iterdir():
                shutil.copy(sdist, root / "build" / "sdists" / sdist.name)
            with chroot_mounts(root):
                sources = [f"/build/sdists/{n}" for n in names]
                run(["chroot", str(root), "/usr/bin/python3", "-m", "pip", "wheel", "-q",
                     "--no-index", "--find-links", "/build/sdists", "--no-deps",
                     "-w", "/build/out", *sources],
                    timeout=BUILD_TIMEOUT_S, env={**_clean_env(), "HOME": "/root"})  # fmt: skip
            out = work / "out"
            out.mkdir()
            for wheel in (root / "build" / "out").glob("*.whl"):
                shutil.copy(wheel, out / wheel.name)
            (out / "COMPLETE").write_text("\n".join(names) + "\n")
            os.rename(out, ready)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return ready


def _clean_env() -> dict[str, str]:
    """The host's pip settings (local indexes, find-links) mean nothing in the chroot."""
    return {k: v for k, v in os.environ.items() if not k.startswith("PIP_")} | {
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
    }


if __name__ == "__main__":
    print(source_wheels())
