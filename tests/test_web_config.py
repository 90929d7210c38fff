"""``[web]`` in the config: what ``config check`` accepts, the daemon can bind.

A listen address that passed the check and then stopped ``forecourt run``
with a traceback put the unit in a restart loop; now the model refuses it
with the key named, and a port alone binds loopback only.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from config.derived import parse_listen
from config.loader import load_config
from hil.stack import ROOT

DEMO = ROOT / "config" / "demo.toml"


def with_web(tmp_path: Path, listen: str) -> Path:
    config = tmp_path / "station.toml"
    config.write_text(DEMO.read_text() + f'\n[web]\nlisten = "{listen}"\n')
    return config


@pytest.mark.parametrize("listen", ["localhost", "127.0.0.1:99999", "abc:def", "::1:8080"])
def test_config_check_refuses_a_listen_address_naming_the_key(tmp_path: Path, listen: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "collector", "config", "check", str(with_web(tmp_path, listen))],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2, done
    assert done.stdout.startswith("web.listen: must be"), done.stdout
    assert "Traceback" not in done.stdout + done.stderr


def test_a_port_alone_is_loopback_and_other_interfaces_are_named(tmp_path: Path) -> None:
    assert parse_listen("8080") == parse_listen(":8080") == ("127.0.0.1", 8080)
    assert parse_listen("localhost:8080") == ("127.0.0.1", 8080)
    assert parse_listen("0.0.0.0:8080") == ("0.0.0.0", 8080)
    assert parse_listen("[::1]:8443") == ("::1", 8443)
    config = load_config(with_web(tmp_path, "8080"))
    assert config.web.bind == ("127.0.0.1", 8080)
    assert load_config(DEMO).web.bind is None, "no listen: no page"
