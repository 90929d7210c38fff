"""The gateway's Debian root file systems, built once and cached by their package list.

Two trees, both armhf Debian bookworm made by ``mmdebstrap`` (dpkg's
maintainer scripts run under qemu-user through binfmt_misc):

- the **image**: what a station gateway ships: python3, systemd, the armmp
  kernel, udev, sqlite3. Its initramfs lists only the modules the virt
  machine boots from (``MODULES=list``): Debian's default (``MODULES=most``,
  25 MB) panics a 128 MB guest with "System is deadlocked on memory"
  (/work/shared/gateway-measured.md); the short one is 4.9 MB.
- the **builder**: the image's python plus a compiler, for the dependencies
  the package registry has no armv7l wheel of (hil/gateway/wheels.py).

Each is a tarball ``<cache>/rootfs-<name>-<key>.tar`` where ``key`` is the
SHA-256 of everything that decides its contents (suite, architecture,
variant, package list, the hook text): change one and a new tree is built,
leave them and the 3-18 minutes of mmdebstrap are skipped.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

SUITE = "bookworm"
ARCH = "armhf"
VARIANT = "apt"

IMAGE_PACKAGES: tuple[str, ...] = (
    "python3", "python3-venv", "systemd-sysv", "linux-image-armmp", "udev", "kmod",
    "sqlite3", "initramfs-tools", "e2fsprogs", "procps",
)  # fmt: skip
BUILDER_PACKAGES: tuple[str, ...] = (
    "python3", "python3-venv", "python3-dev", "python3-pip", "build-essential", "libffi-dev",
)  # fmt: skip

#: The modules the virt machine needs before the root file system is mounted.
INITRD_MODULES = ("virtio_mmio", "virtio_blk", "virtio_net", "ext4")

#: Runs before any package is unpacked: initramfs-tools then builds the short
#: initrd the first time (no second ``update-initramfs`` under qemu-user).
IMAGE_SETUP_HOOK = (
    'mkdir -p "$1/etc/initramfs-tools/conf.d" "$1/usr/share/initramfs-tools/modules.d"'
    ' && echo MODULES=list > "$1/etc/initramfs-tools/conf.d/gateway.conf"'
    ' && printf "%s\\n" '
    + " ".join(INITRD_MODULES)
    + ' > "$1/usr/share/initramfs-tools/modules.d/gateway"'
)

#: mmdebstrap took 3 to 18 minutes on two busy cores: an hour bounds a stuck one.
MMDEBSTRAP_TIMEOUT_S = 3600


def default_cache() -> Path:
    """Outside the repository: ``$FORECOURT_GATEWAY_CACHE``, else
    /var/cache/forecourt-gateway for root, else ``$XDG_CACHE_HOME``."""
    given = os.environ.get("FORECOURT_GATEWAY_CACHE")
    if given:
        return Path(given)
    if os.geteuid() == 0:
        return Path("/var/cache/forecourt-gateway")
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "forecourt-gateway"


def spec(name: str) -> tuple[list[str], str]:
    """The mmdebstrap options of tree ``name`` and its cache key."""
    if name == "image":
        packages, hooks = IMAGE_PACKAGES, [f"--setup-hook={IMAGE_SETUP_HOOK}"]
    elif name == "builder":
        packages, hooks = BUILDER_PACKAGES, []
    else:
        raise ValueError(f"no tree {name!r}")
    options = [
        f"--arch={ARCH}", f"--variant={VARIANT}", f"--include={','.join(packages)}", *hooks,
    ]  # fmt: skip
    key = hashlib.sha256("\n".join([SUITE, *options]).encode()).hexdigest()[:16]
    return options, key


def tarball(name: str, cache: Path | None = None) -> Path:
    """The cached tree ``name``, built now when missing."""
    cache = default_cache() if cache is None else cache
    options, key = spec(name)
    path = cache / f"rootfs-{name}-{key}.tar"
    if path.is_file():
        return path
    cache.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".part")
    argv = ["mmdebstrap", "--quiet", "--format=tar", *options, SUITE, str(partial)]
    print(f"gateway: building the {name} tree (mmdebstrap, minutes): {' '.join(argv)}",
          file=sys.stderr, flush=True)  # fmt: skip
    done = subprocess.run(argv, timeout=MMDEBSTRAP_TIMEOUT_S, check=False)
    if done.returncode != 0:
        partial.unlink(missing_ok=True)
        raise RuntimeError(f"mmdebstrap of the {name} tree exited {done.returncode}")
    os.replace(partial, path)
    return path


if __name__ == "__main__":
    for tree in sys.argv[1:] or ["image", "builder"]:
        print(tarball(tree))
