#!/usr/bin/env python3
"""Install wheels into a venv with the stdlib only: the release installer's pip stand-in.

    VENV/bin/python -I wheels.py --venv VENV WHEEL...

Why not pip (docs/decisions.md): pip peaks at ~62-66 MB RSS installing the
bundle's ~25 wheels (measured, docs/performance.md), and it runs beside the
collector (~53 MB) inside the unit's MemoryMax=96M on a 64-128 MB box:
the cgroup would kill one of them. Unpacking a wheel is a defined format
(PEP 427 / the binary distribution format spec), and the bundle's wheelhouse
is fixed by its manifest, so no resolver is needed: this writes each wheel's
files (``*.data/purelib|platlib`` into site-packages, ``*.data/scripts``
into bin, ``*.data/data`` under the venv), records ``INSTALLER``, writes the
console scripts of ``entry_points.txt``, and refuses any member that would
land outside the venv. It runs in the new venv's own python, as a child
process of the collector, in about the memory of a bare interpreter.
"""

from __future__ import annotations

import configparser
import os
import sys
import sysconfig
import zipfile
from pathlib import Path, PurePosixPath

#: Copy size: small for a 64 MB box.
CHUNK_BYTES = 64 * 1024

SCRIPT = """#!{python}
import sys
from {module} import {head}
if __name__ == "__main__":
    sys.exit({call}())
"""


class WheelError(Exception):
    pass


def _target(member: str, data_dir: str, site: Path, venv: Path) -> Path | None:
    path = PurePosixPath(member)
    if path.is_absolute() or ".." in path.parts:
        raise WheelError(f"{member}: escapes the venv")
    if path.parts[0] != data_dir:
        return site / path
    if len(path.parts) < 3:
        return None
    kind, rest = path.parts[1], PurePosixPath(*path.parts[2:])
    if kind in ("purelib", "platlib"):
        return site / rest
    if kind == "scripts":
        return venv / "bin" / rest
    if kind == "data":
        return venv / rest
    return None  # headers: nothing here compiles against them


def install_wheel(wheel: Path, venv: Path, site: Path) -> str:
    """Unpack one wheel; returns its dist-info directory name."""
    name, version = wheel.name.split("-")[:2]
    data_dir = f"{name}-{version}.data"
    with zipfile.ZipFile(wheel) as zf:
        dist_info = next(
            (n.split("/")[0] for n in zf.namelist() if n.split("/")[0].endswith(".dist-info")),
            None,
        )
        if dist_info is None:
            raise WheelError(f"{wheel.name}: no .dist-info")
        for info in zf.infolist():
            if info.is_dir():
                continue
            target = _target(info.filename, data_dir, site, venv)
            if target is None:
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, open(target, "wb") as out:
                while chunk := src.read(CHUNK_BYTES):
                    out.write(chunk)
            mode = (info.external_attr >> 16) & 0o777
            if mode & 0o111 or info.filename.startswith(f"{data_dir}/scripts/"):
                target.chmod(0o755)
    (site / dist_info / "INSTALLER").write_text("forecourt-ota\n")
    _console_scripts(site / dist_info / "entry_points.txt", venv)
    return dist_info


def _console_scripts(entry_points: Path, venv: Path) -> None:
    if not entry_points.is_file():
        return
    parser = configparser.ConfigParser(delimiters=("=",))
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(entry_points)
    if not parser.has_section("console_scripts"):
        return
    python = venv / "bin" / "python"
    for script, spec in parser.items("console_scripts"):
        module, _, attr = spec.strip().partition(":")
        head = attr.split(".")[0]
        path = venv / "bin" / script
        path.write_text(SCRIPT.format(python=python, module=module, head=head, call=attr))
        path.chmod(0o755)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) < 3 or argv[0] != "--venv":
        print("usage: wheels.py --venv VENV WHEEL...", file=sys.stderr)
        return 2
    venv = Path(argv[1])
    if Path(sys.prefix).resolve() != venv.resolve():
        print(f"wheels.py: run it with {venv}/bin/python (this is {sys.prefix})", file=sys.stderr)
        return 2
    site = Path(sysconfig.get_paths()["purelib"])
    try:
        for wheel in argv[2:]:
            install_wheel(Path(wheel), venv, site)
    except (WheelError, zipfile.BadZipFile, OSError) as exc:
        print(f"wheels.py: {exc}", file=sys.stderr)
        return 1
    os.sync()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
