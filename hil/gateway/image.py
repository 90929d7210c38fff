"""The gateway image: Debian armhf with the product installed from its own bundle.

Steps (each cached under :func:`hil.gateway.rootfs.default_cache`):

1. the image tree (rootfs.py, mmdebstrap) and the armv7l wheels the registry
   lacks (wheels.py);
2. the release bundle for ``linux-armv7l``, built by scripts/build-bundle
   exactly as a release is, signed with a release key made once by
   scripts/provision;
3. the *stage*: the image tree unpacked, then, under qemu-user in a chroot,
   the first install of the bundle by the product's own path
   (``python3 -m collector.ota.install --root /var/lib/forecourt/ota``, the
   release's venv, wheels unpacked by collector/ota/wheels.py, compileall,
   smoke import), the launcher in /usr/lib/forecourt, the unit from
   ``systemd/`` enabled, ``forecourt-serial.conf`` in modules-load.d, the
   ``forecourt`` user, and the harness's own pieces (a root shell on the
   virtio console, the network file, a small journal). Keyed by the image
   tree, the bundle's SM3 and every file copied in;
4. per boot set (:func:`disk`): the config for the run written into the
   stage and an ext4 disk made from it with ``mkfs.ext4 -d`` (no loop
   mounts), 1.5 s.

The kernel and initrd are the image's own (/boot), copied out for
``-kernel``/``-initrd``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from hil.gateway import rootfs, wheels
from hil.gateway.wheels import chroot_mounts, extract, run

ROOT = Path(__file__).resolve().parents[2]
GUEST = Path(__file__).with_name("guest")
PLATFORM = "linux-armv7l"
#: Debian 12's C library: the newest manylinux tag a wheel may carry.
GLIBC = "2.36"
#: Where the product lives in the image (systemd/forecourt-collector.service).
OTA_ROOT = "/var/lib/forecourt/ota"
CONFIG = "/etc/forecourt/collector.toml"
KEYS = "/etc/forecourt/keys.toml"
STORE = "/var/lib/forecourt/store.sqlite"
#: The station code of the generated config (every order carries it).
STATION = "VM-STATION-1"
#: The disk: the release (~70 MB installed) and Debian (~330 MB) with room to
#: spare, like a 1 GB eMMC; the file is sparse.
DISK_BYTES = 1024 * 1024 * 1024
#: Staged images kept in the cache (newest first).
KEEP_STAGES = 3
#: Bump when the staging steps change, so a cached stage is made again.
STAGE_FORMAT = 3
#: The project's packages the first install runs from (docs/upgrade.md,
#: "First install": from any tree of the project).
INSTALL_PACKAGES = ("collector", "uplink", "config", "buffer", "protocols", "records")


@dataclass(frozen=True)
class Stage:
    root: Path
    kernel: Path
    initrd: Path
    bundle: dict[str, object]
    keys: Path


def release_keys(cache: Path) -> Path:
    """The test release key pair (scripts/provision), made once."""
    keys = cache / "keys"
    if not (keys / "platform-sm2.toml").is_file():
        shutil.rmtree(keys, ignore_errors=True)
        run([sys.executable, str(ROOT / "scripts" / "provision"), "--device-id", "vm-gw",
             "--kid", "vm-k1", "--out", str(keys), "--platform-pair"])  # fmt: skip
    return keys


def bundle(cache: Path, find_links: Path, keys: Path) -> dict[str, object]:
    """The release bundle for the gateway, built from this tree."""
    out = cache / "bundles"
    printed = run(
        [sys.executable, str(ROOT / "scripts" / "build-bundle"), "--key",
         str(keys / "platform-sm2.toml"), "--out", str(out), "--platform", PLATFORM,
         "--glibc", GLIBC, "--find-links", str(find_links),
         "--wheelhouse", str(cache / "wheelhouse")],
        timeout=1800,
        # The wheel's zip times fixed: the same tree gives the same bundle, so
        # an unchanged product finds its staged image again.
        env={**os.environ, "SOURCE_DATE_EPOCH": "315532800"},
    )  # fmt: skip
    result: dict[str, object] = json.loads(printed.strip().splitlines()[-1])
    return result


def _copied_files() -> list[Path]:
    return [
        ROOT / "systemd" / "forecourt-collector.service",
        ROOT / "systemd" / "forecourt-serial.conf",
        ROOT / "systemd" / "60-forecourt-gpio.rules",
        ROOT / "collector" / "ota" / "launcher.py",
        *sorted(GUEST.iterdir()),
    ]


def stage(cache: Path | None = None) -> Stage:
    """The installed image tree, built when missing."""
    cache = rootfs.default_cache() if cache is None else cache
    image_tar = rootfs.tarball("image", cache)
    extra = wheels.source_wheels(cache)
    keys = release_keys(cache)
    made = bundle(cache, extra, keys)
    digest = hashlib.sha256(f"{STAGE_FORMAT}\n{image_tar.name}\n{made['sm3']}\n".encode())
    for path in _copied_files():
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    where = cache / f"stage-{digest.hexdigest()[:16]}"
    result = Stage(where / "root", where / "vmlinuz", where / "initrd.img", made, keys)
    if (where / "COMPLETE").is_file():
        return result
    print(f"gateway: staging the image in {where}", file=sys.stderr, flush=True)
    shutil.rmtree(where, ignore_errors=True)
    extract(image_tar, result.root)
    _customize(result.root, Path(str(made["bundle"])))
    boot = result.root / "boot"
    shutil.copy(next(boot.glob("vmlinuz-*")), result.kernel)
    shutil.copy(next(boot.glob("initrd.img-*")), result.initrd)
    if result.initrd.stat().st_size > 12 * 1024 * 1024:
        raise RuntimeError(f"{result.initrd}: larger than the short initrd (MODULES=list)")
    (where / "COMPLETE").write_text(json.dumps(made) + "\n")
    # ~500 MB each: keep the newest few (a run in progress holds its own
    # kernel, initrd and disk copies, never the stage's).
    stages = sorted(cache.glob("stage-*"), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in stages[KEEP_STAGES:]:
        shutil.rmtree(old, ignore_errors=True)
    return result


def _chroot(root: Path, *argv: str, timeout: float = 1800) -> str:
    return run(["chroot", str(root), *argv], timeout=timeout, env=_env())


def _env() -> dict[str, str]:
    return {
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": "/root",
        "LANG": "C.UTF-8",
    }


def _customize(root: Path, bundle_path: Path) -> None:
    etc = root / "etc"
    (etc / "hostname").write_text("gateway\n")
    (etc / "fstab").write_text("/dev/vda / ext4 rw,errors=remount-ro 0 1\n")
    # The product's files, where docs/upgrade.md puts them.
    lib = root / "usr" / "lib" / "forecourt"
    lib.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "collector" / "ota" / "launcher.py", lib / "launcher.py")
    units = etc / "systemd" / "system"
    shutil.copy(ROOT / "systemd" / "forecourt-collector.service", units)
    modules_load = root / "usr" / "lib" / "modules-load.d"
    modules_load.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "systemd" / "forecourt-serial.conf", modules_load)
    rules = root / "usr" / "lib" / "udev" / "rules.d"
    rules.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "systemd" / "60-forecourt-gpio.rules", rules)
    # The harness: a shell on a virtio port, the network, a small journal.
    shutil.copy(GUEST / "gateway-shell.service", units)
    agent = root / "usr" / "local" / "lib" / "gateway-agent.py"
    agent.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(GUEST / "gateway-agent.py", agent)
    network = etc / "systemd" / "network"
    network.mkdir(parents=True, exist_ok=True)
    shutil.copy(GUEST / "10-uplink.network", network)
    journald = etc / "systemd" / "journald.conf.d"
    journald.mkdir(parents=True, exist_ok=True)
    shutil.copy(GUEST / "journald.conf", journald / "gateway.conf")
    for target, unit in (
        ("multi-user.target", "forecourt-collector.service"),
        ("sysinit.target", "gateway-shell.service"),
        ("multi-user.target", "systemd-networkd.service"),
        ("network-online.target", "systemd-networkd-wait-online.service"),
    ):
        wants = units / f"{target}.wants"
        wants.mkdir(exist_ok=True)
        link = wants / unit
        link.unlink(missing_ok=True)
        ours = (units / unit).exists()
        link.symlink_to(f"/etc/systemd/system/{unit}" if ours else f"/lib/systemd/system/{unit}")
    # Nothing on a station gateway needs these at boot; they cost the 64 MB VM.
    for masked in ("apt-daily.timer", "apt-daily-upgrade.timer", "e2scrub_all.timer",
                   "fstrim.timer", "getty@tty1.service", "man-db.timer", "getty-static.service",
                   "dpkg-db-backup.timer", "e2scrub_reap.service"):  # fmt: skip
        link = units / masked
        link.unlink(missing_ok=True)
        link.symlink_to("/dev/null")
    (root / "etc" / "machine-id").write_text("")
    with chroot_mounts(root):
        _chroot(root, "useradd", "--system", "--user-group", "--home-dir", "/var/lib/forecourt",
                "--shell", "/usr/sbin/nologin", "forecourt")  # fmt: skip
        _chroot(root, "passwd", "-d", "root")
        src = root / "tmp" / "forecourt-src"
        shutil.rmtree(src, ignore_errors=True)
        src.mkdir(parents=True)
        for package in INSTALL_PACKAGES:
            shutil.copytree(ROOT / package, src / package,
                            ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
        shutil.copy(bundle_path, root / "tmp" / bundle_path.name)
        (root / "var" / "lib" / "forecourt").mkdir(parents=True, exist_ok=True)
        _chroot(root, "/usr/bin/env", "PYTHONPATH=/tmp/forecourt-src", "/usr/bin/python3", "-m",
                "collector.ota.install", "--root", OTA_ROOT, f"/tmp/{bundle_path.name}",
                timeout=3600)  # fmt: skip
        shutil.rmtree(src)
        (root / "tmp" / bundle_path.name).unlink()
        _chroot(root, "chown", "-R", "forecourt:forecourt", "/var/lib/forecourt")
    (etc / "forecourt").mkdir(exist_ok=True)


@dataclass(frozen=True)
class PortLine:
    """One dispenser line: the config's device path in the guest."""

    number: int
    device: str


def write_config(
    root: Path, lines: list[PortLine], broker: tuple[str, int], extra: str = ""
) -> str:
    """The run's config, into the stage (``/etc/forecourt/collector.toml``)."""
    ports = "".join(
        f"""
[[ports]]
number = {line.number}
device = "{line.device}"
protocol = "sinopec"
parity = "N"
addresses = [1]
poll_interval_ms = 100
response_timeout_ms = 500
"""
        for line in lines
    )
    text = f"""[device]
id = "vm-gw"
station = "{STATION}"

[store]
path = "{STORE}"

[uplink]
host = "{broker[0]}"
port = {broker[1]}
keys_file = "{KEYS}"
kid = "demo-k1"
batch_max_records = 50
heartbeat_s = 30
reconnect_min_s = 0.5
reconnect_max_s = 5.0

[log]
format = "json"
{extra}{ports}"""
    config = root / CONFIG.lstrip("/")
    config.write_text(text)
    keys = root / KEYS.lstrip("/")
    shutil.copy(ROOT / "config" / "demo-keys.toml", keys)
    uid, gid = _owner(root, "forecourt")
    for path in (config, keys, config.parent):
        os.chown(path, uid, gid)
    keys.chmod(0o600)
    config.chmod(0o600)
    return text


def _owner(root: Path, name: str) -> tuple[int, int]:
    for line in (root / "etc" / "passwd").read_text().splitlines():
        fields = line.split(":")
        if fields[0] == name:
            return int(fields[2]), int(fields[3])
    raise RuntimeError(f"no user {name} in the image")


#: A drop-in after guest/journald.conf: the journal kept on the disk for a
#: measuring run, so a restart's cause (the watchdog, the OOM killer, an
#: exception) is still there after the run, in the artifacts' disk image.
PERSISTENT_JOURNAL = "etc/systemd/journald.conf.d/zz-persistent.conf"


def journal_policy(root: Path, persistent: bool) -> None:
    """The journal of the next disk made from ``root``: on disk, or in RAM (4 MB)."""
    dropin = root / PERSISTENT_JOURNAL
    if persistent:
        dropin.write_text("[Journal]\nStorage=persistent\nSystemMaxUse=24M\n")
    else:
        dropin.unlink(missing_ok=True)


def reset_state(root: Path) -> None:
    """A new station: no store, no cached config, no journal of earlier runs."""
    for path in (root / "var" / "lib" / "forecourt").glob("store.sqlite*"):
        path.unlink()
    shutil.rmtree(root / "var" / "cache" / "forecourt", ignore_errors=True)
    for path in (root / "var" / "lib" / "forecourt").glob("*.commands.sqlite*"):
        path.unlink()
    journal = root / "var" / "log" / "journal"
    for path in journal.iterdir() if journal.is_dir() else ():
        shutil.rmtree(path, ignore_errors=True)


def disk(stage_root: Path, out: Path) -> Path:
    """An ext4 disk image of ``stage_root`` (``mkfs.ext4 -d``: no loop mount)."""
    out.unlink(missing_ok=True)
    with open(out, "wb") as f:
        f.truncate(DISK_BYTES)
    run(["mkfs.ext4", "-q", "-F", "-L", "gateway", "-d", str(stage_root), str(out)], timeout=600)
    return out


def fsck(image: Path) -> str:
    """``e2fsck -fn``: the file system checked without changing it."""
    done = subprocess.run(["e2fsck", "-fn", str(image)], capture_output=True, text=True)
    return f"exit {done.returncode}: {done.stdout.strip().splitlines()[-1] if done.stdout else ''}"


if __name__ == "__main__":
    built = stage()
    print(json.dumps({"root": str(built.root), "kernel": str(built.kernel),
                      "initrd": str(built.initrd), "bundle": built.bundle}))  # fmt: skip
