"""What the daemon has loaded that it should not need: the footprint's deny-list.

RSS ≤ 40 MB with 32 ports. The largest costs were libraries the
poll loop never uses (docs/performance.md, "Footprint"). These packages must
not be imported by a started collector; ``forecourt status`` reports the
ones that are (``heavy_modules``), and tests/test_footprint.py starts the
real daemon and fails on any.
"""

from __future__ import annotations

import sys

#: Top-level packages a running collector must not have imported at start:
#: the config validator (pydantic: ≈ 18 MB; the daemon holds config/view.py
#: views), tools and test libraries installed beside it (microdot: the web
#: page has its own small server, collector/web/server.py), and parts imported
#: only on demand — sqlite_utils (``forecourt`` tools, not the store). Not listed: gmssl
#: (≈ 0.9 MB) — with commands on, the start checks that the device's SM2 key
#: pair belongs together (uplink/keys.py), and every command's signature
#: needs it anyway, so it would be loaded by the first command of the day.
#: cryptography (≈ 6.9 MB: a Rust extension with its own OpenSSL) is only the
#: fallback where the system libcrypto cannot do SM4-GCM (uplink/crypto.py).
DENY = frozenset(
    {
        "cryptography",
        "pydantic",
        "pydantic_core",
        "annotated_types",
        "sqlite_utils",
        "tabulate",
        "click",
        "rich",
        "aiohttp",
        "requests",
        "urllib3",
        "selenium",
        "hypothesis",
        "pytest",
        "microdot",
        "pkg_resources",
        "setuptools",
    }
)


def heavy_modules() -> list[str]:
    """The deny-listed packages imported in this process, sorted."""
    return sorted({name.partition(".")[0] for name in list(sys.modules)} & DENY)
