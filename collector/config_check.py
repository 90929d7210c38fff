"""Check a config text from inside the daemon without importing pydantic.

The daemon holds the config as views (config/view.py) and never imports the
models; anything in it that must validate a new config (the web page's
editor; remote config changes) runs ``forecourt config check`` in a
short-lived child instead: the same loader, the same ``key.path: reason``
lines, and the ≈ 18 MB of pydantic leave with the child.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
from pathlib import Path

#: A config check is a fresh interpreter importing pydantic and the models
#: (≈ 0.3 s here, a few seconds on a 300 MHz gateway under load): generous.
CONFIG_CHECK_TIMEOUT_S = 60.0


async def check_config_text(text: str, near: Path) -> list[str]:
    """The config loader's error lines for ``text`` (empty: valid).

    Run as ``forecourt config check`` in a short-lived child, so the daemon
    never imports pydantic (≈ 18 MB that would stay after the first edit;
    docs/performance.md, "Footprint"): the same loader, the same lines.
    """
    fd, tmp = tempfile.mkstemp(dir=near, prefix=".check.", suffix=".toml")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        child = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "collector", "config", "check", tmp,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        try:
            out, _ = await asyncio.wait_for(child.communicate(), CONFIG_CHECK_TIMEOUT_S)
        except TimeoutError:
            child.kill()
            await child.wait()
            return [f"config: the check did not finish within {CONFIG_CHECK_TIMEOUT_S:g} s"]
    finally:
        os.unlink(tmp)
    lines = out.decode("utf-8", "replace").splitlines()
    if child.returncode == 0:
        return []
    errors = [line.replace(tmp, "config") for line in lines if line.strip()]
    return errors or [f"config: the check failed (exit status {child.returncode})"]
