"""Which bundles fit this device: its platform and python tags.

A bundle carries compiled wheels (cryptography, pydantic-core, cffi,
pycryptodomex): one built on an x86 machine does not run on the armhf
gateway. The bundle's manifest names the platform and python it was built
for (scripts/build-bundle ``--platform``); the installer refuses one that
does not fit before installing anything (collector/ota/bundle.py
``check_fits``), and ``device.status`` reports this device's tags so the
platform can offer the right bundle. Stdlib only and cheap: the daemon
imports it for ``device.status``.
"""

from __future__ import annotations

import sys
import sysconfig


def machine_platform() -> str:
    """``linux-armv7l`` on the armhf gateway, ``linux-x86_64`` on a PC
    (``sysconfig.get_platform()``, the form a wheel's tag is derived from)."""
    return sysconfig.get_platform()


def python_tag() -> str:
    return f"cp{sys.version_info.major}{sys.version_info.minor}"


def machine_arch(platform: str) -> str:
    """``linux-armv7l`` → ``armv7l``: the part a wheel's platform tag ends with."""
    return platform.partition("-")[2] or platform


def device_tags() -> dict[str, str]:
    """What ``device.status`` reports under ``bundle``."""
    return {"platform": machine_platform(), "python": python_tag()}
