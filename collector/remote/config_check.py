"""Check a config text from inside the daemon without importing pydantic.

The daemon holds the config as views (config/view.py) and never imports the
models; anything in it that must validate a new config (the web page's
editor; remote config changes) runs ``forecourt config check`` in a
short-lived child instead: the same loader, the same ``key.path: reason``
lines, and the ≈ 18 MB of pydantic leave with the child.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import tempfile
from pathlib import Path

#: A config check is a fresh interpreter importing pydantic and the models
#: (≈ 0.3 s here, a few seconds on a 300 MHz gateway under load): generous.
CONFIG_CHECK_TIMEOUT_S = 60.0


async def run_child(
    argv: list[str], stdin: bytes = b"", timeout_s: float = CONFIG_CHECK_TIMEOUT_S
) -> tuple[int | None, bytes, bytes]:
    """``argv`` as a short-lived child (this interpreter), ``stdin`` fed to it:
    (exit status, stdout, stderr); the status is None when it ran past
    ``timeout_s`` — then it is killed and reaped, never left behind; killed too
    when the wait is cancelled."""
    child = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(child.communicate(stdin), timeout_s)
    except TimeoutError:
        child.kill()
        await child.wait()
        return None, b"", b""
    except BaseException:
        # Cancelled (the daemon stopping mid-way): the child goes too — a
        # detect child left behind would go on probing a line the next
        # start polls.
        child.kill()
        with contextlib.suppress(asyncio.CancelledError):
            await child.wait()  # reaped while the loop runs
        raise
    return child.returncode, out, err


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
        argv = [sys.executable, "-m", "collector", "config", "check", tmp]
        status, out, err = await run_child(argv)
    finally:
        os.unlink(tmp)
    if status is None:
        return [f"config: the check did not finish within {CONFIG_CHECK_TIMEOUT_S:g} s"]
    if status == 0:
        return []
    lines = (out + err).decode("utf-8", "replace").splitlines()
    errors = [line.replace(tmp, "config") for line in lines if line.strip()]
    return errors or [f"config: the check failed (exit status {status})"]
