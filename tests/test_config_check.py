"""Checking a config text from the daemon's side (collector/remote/config_check.py).

A real ``forecourt config check`` child validates; the caller — a fresh
interpreter standing for the daemon — gets the loader's own error lines and
never imports pydantic itself.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "config" / "demo.toml"

CALLER = """
import asyncio, json, sys
from pathlib import Path
from collector.remote.config_check import check_config_text
text = Path(sys.argv[1]).read_text()
errors = asyncio.run(check_config_text(text, Path(sys.argv[2])))
print(json.dumps({"errors": errors, "pydantic": "pydantic" in sys.modules}))
"""


def check(tmp_path: Path, text: str) -> dict[str, object]:
    source = tmp_path / "edited.toml"
    source.write_text(text)
    out = subprocess.run(
        [sys.executable, "-c", CALLER, str(source), str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    result: dict[str, object] = json.loads(out.stdout)
    return result


def test_a_valid_config_has_no_errors(tmp_path: Path) -> None:
    assert check(tmp_path, DEMO.read_text()) == {"errors": [], "pydantic": False}


def test_errors_are_the_loaders_lines(tmp_path: Path) -> None:
    text = DEMO.read_text().replace("heartbeat_s = 10", "heartbeat_s = 0\nbogus = 1")
    result = check(tmp_path, text)
    assert result["pydantic"] is False
    assert result["errors"] == [
        "uplink.heartbeat_s: must be >= 1, got 0",
        "uplink.bogus: unknown key",
    ], result
    assert not list(tmp_path.glob(".check.*")), "the temporary file is removed"


def test_a_child_past_its_time_is_killed_and_reaped() -> None:
    """run_child (the config check's and config.set's child): a hung child is
    killed at its timeout and reaped, never left running beside the daemon."""
    import asyncio
    import os

    from collector.remote.config_check import run_child

    argv = [sys.executable, "-c", "import time; time.sleep(60)"]
    status, _, _ = asyncio.run(run_child(argv, b"", 1.0))
    assert status is None
    children = Path(f"/proc/{os.getpid()}/task/{os.getpid()}/children").read_text().split()
    assert children == []


def test_relay_and_listen_are_accepted_for_dart(tmp_path: Path) -> None:
    """DART has a bus monitor (protocols/dart/monitor.py): both passive modes check."""
    port = 'protocol = "sinopec"'
    assert port in DEMO.read_text()
    relay = f'protocol = "dart"\nmode = "relay"\npos_device = "{tmp_path}/pos"'
    for edit in (relay, 'protocol = "dart"\nmode = "listen"'):
        assert check(tmp_path, DEMO.read_text().replace(port, edit, 1)) == {
            "errors": [],
            "pydantic": False,
        }


def test_furen_is_checked_in_every_mode(tmp_path: Path) -> None:
    """Furen has a poller and a monitor whose frames say their side
    (protocols/furen): poll, relay and listen check; an address other than 1
    is refused (one fuelling point a line, no address on the wire)."""
    port = 'protocol = "sinopec"'
    furen = 'protocol = "furen"'
    relay = f'{furen}\nmode = "relay"\npos_device = "{tmp_path}/pos"'
    for edit in (furen, relay, f'{furen}\nmode = "listen"'):
        assert check(tmp_path, DEMO.read_text().replace(port, edit, 1)) == {
            "errors": [],
            "pydantic": False,
        }
    text = DEMO.read_text().replace(port, furen, 1).replace("addresses = [1]", "addresses = [2]", 1)
    assert check(tmp_path, text)["errors"] == [
        "ports.0.addresses.0: protocol 'furen' addresses are 1..1, got 2"
    ]


def test_uninfo_is_checked_in_every_mode(tmp_path: Path) -> None:
    """Uninfo has a poller and a monitor that reads the loop itself
    (protocols/uninfo): poll, relay and listen check; pumps are 1..16."""
    port = 'protocol = "sinopec"'
    uninfo = 'protocol = "uninfo"'
    relay = f'{uninfo}\nmode = "relay"\npos_device = "{tmp_path}/pos"'
    for edit in (uninfo, relay, f'{uninfo}\nmode = "listen"'):
        assert check(tmp_path, DEMO.read_text().replace(port, edit, 1)) == {
            "errors": [],
            "pydantic": False,
        }
    text = (
        DEMO.read_text().replace(port, uninfo, 1).replace("addresses = [1]", "addresses = [17]", 1)
    )
    assert check(tmp_path, text)["errors"] == [
        "ports.0.addresses.0: protocol 'uninfo' addresses are 1..16, got 17"
    ]
