"""Install a verified bundle as ``releases/<version>/`` with its own venv.

Blocking code for a worker thread (collector/ota/upgrade.py) and the
first-install CLI (the bundle checked beforehand: the signature is ota.upgrade's)::

    python -m collector.ota.install --root DIR BUNDLE

Steps, each safe to be killed at (docs/upgrade.md): a half-made release
directory has no ``INSTALLED`` marker and is removed by the next install;
the running release and ``current`` are never touched here. The venv is
made without pip (``python -m venv --without-pip``: 10 MB and seconds less
per release) and the wheels are unpacked by collector/ota/wheels.py (stdlib,
run by the new venv's python: pip would need ~65 MB beside the running
collector, docs/decisions.md), then byte-compiled and smoke-imported.
Nothing is fetched from anywhere.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from collector.ota import launcher
from collector.ota.bundle import BundleError, unpack
from config import filemodes
from config.atomic import write_atomically

#: ``python -m venv`` takes ~1 s on a desktop, tens of seconds on the gateway.
VENV_TIMEOUT_S = 300
#: Unpacking ~25 wheels, and byte-compiling them: minutes on a slow ARM.
INSTALL_TIMEOUT_S = 1200
#: The stdlib wheel installer, run by the new venv's python (collector/ota/wheels.py).
WHEELS_PY = Path(__file__).with_name("wheels.py")
#: What the smoke check imports: the daemon, the uplink, the config models, SM2.
SMOKE_IMPORTS = "collector.daemon, uplink.mqtt, uplink.commands, config.loader, gmssl.sm2"
#: Free space needed, as a multiple of the bundle: the unpacked wheels (1×)
#: and the installed venv (~4× the wheels) exist side by side during install.
SPACE_FACTOR = 6


def _run(argv: list[str], timeout: float, what: str) -> None:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise BundleError("INSTALL_FAILED", f"{what}: not done within {timeout:.0f} s") from None
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip()[-400:]
        raise BundleError("INSTALL_FAILED", f"{what} exited {done.returncode}: {tail}")


def install(root: Path, bundle: Path, expect_version: str | None = None) -> dict[str, Any]:
    """Unpack and install ``bundle`` under ``root``; returns the manifest."""
    root.mkdir(parents=True, exist_ok=True)
    (root / launcher.RELEASES).mkdir(exist_ok=True)
    free = shutil.disk_usage(root).free
    if free < SPACE_FACTOR * bundle.stat().st_size:
        raise BundleError("NO_SPACE", f"{free} bytes free < {SPACE_FACTOR}× the bundle")
    staging = root / "staging" / "unpack"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        manifest = unpack(bundle, staging, expect_version)
        version = str(manifest["version"])
        if version in (launcher.current_release(root), launcher.read_state(root).get("good")):
            raise BundleError("SAME_VERSION", f"{version} is the running or the good release")
        target = launcher.release_dir(root, version)
        shutil.rmtree(target, ignore_errors=True)  # a half-made or abandoned one
        target.mkdir()
        venv = target / "venv"
        _run([sys.executable, "-m", "venv", "--without-pip", str(venv)],
             VENV_TIMEOUT_S, "python -m venv")  # fmt: skip
        python = str(venv / "bin" / "python")
        wheels = sorted(str(w) for w in (staging / "wheels").glob("*.whl"))
        _run([python, "-I", str(WHEELS_PY), "--venv", str(venv), *wheels],
             INSTALL_TIMEOUT_S, "wheel install")  # fmt: skip
        # Byte-compile now, once, rather than at the first start on a slow CPU.
        _run([python, "-I", "-m", "compileall", "-q", "-j", "1", str(venv / "lib")],
             INSTALL_TIMEOUT_S, "compileall")  # fmt: skip
        _smoke(python, version)
        info = {k: manifest.get(k) for k in ("version", "python", "store_schema")}
        # The venv's files were written by child processes without fsync:
        # all of them on flash before the markers that declare the release whole.
        os.sync()
        # Both durable, release.json first: a power cut must never leave an
        # INSTALLED release whose schema the launcher cannot read (the store
        # downgrade on a rollback keys on it).
        write_atomically(target / launcher.RELEASE_INFO, (json.dumps(info) + "\n").encode())
        write_atomically(target / launcher.INSTALLED, f"{version}\n".encode())
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return manifest


def _smoke(python: str, version: str) -> None:
    """The new venv imports what the daemon needs and is the version it claims
    (a wheel missing from the wheelhouse fails here, not at the switch)."""
    code = f"import {SMOKE_IMPORTS}; from collector import version; print(version())"
    try:
        done = subprocess.run(
            [python, "-I", "-c", code], capture_output=True, text=True, timeout=VENV_TIMEOUT_S
        )
    except subprocess.TimeoutExpired:
        raise BundleError("INSTALL_FAILED", "smoke check timed out") from None
    if done.returncode != 0 or done.stdout.strip() != version:
        tail = (done.stderr or done.stdout).strip()[-400:]
        raise BundleError("INSTALL_FAILED", f"the new release does not import: {tail}")


def prune(root: Path, keep: set[str]) -> list[str]:
    """Remove release directories not in ``keep`` (NAND is 256 MB: two releases fit)."""
    removed = []
    for path in sorted((root / launcher.RELEASES).glob("*")):
        if path.name not in keep and path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path.name)
    return removed


def main(argv: list[str] | None = None) -> int:
    """First install (or a technician's): install, and make it current when none is."""
    parser = argparse.ArgumentParser(prog="python -m collector.ota.install")
    parser.add_argument("--root", required=True, type=Path)
    parser.add_argument("--user", metavar="NAME", help="as root: who the releases go to")
    parser.add_argument("bundle", type=Path)
    args = parser.parse_args(argv)
    try:
        # Run as root, the tree is given to the collector's user, which
        # upgrades, prunes and switches releases in it (config/filemodes.py).
        owner = filemodes.owner_for(args.root, args.user)
    except filemodes.NoSuchUser as exc:
        print(f"install: --user: {exc}", file=sys.stderr)
        return 2
    try:
        manifest = install(args.root, args.bundle)
    except BundleError as exc:
        print(f"install: {exc.code}: {exc}", file=sys.stderr)
        return 1
    version = str(manifest["version"])
    if launcher.current_release(args.root) is None:
        launcher.switch_current(args.root, version)
        state = launcher.read_state(args.root)
        state["good"] = version
        launcher.write_state(args.root, state)
    if owner is not None:
        filemodes.give_tree(args.root, owner)
    print(json.dumps({"installed": version, "root": str(args.root)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
