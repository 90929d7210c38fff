"""scripts/provision: a device's key set, owner-only files, fingerprints only."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from uplink.keys import check_owner_only, load_keys, load_sm2_pair, load_sm2_public

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "provision"


def provision(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=60
    )


def test_provision_writes_a_usable_owner_only_key_set(tmp_path: Path) -> None:
    out = tmp_path / "dev-001"
    result = provision(
        "--device-id", "dev-001", "--kid", "k1", "--out", str(out), "--platform-pair"
    )
    assert result.returncode == 0, result.stderr
    keys = load_keys(out / "keys.toml")
    private, public = load_sm2_pair(out / "device-sm2.toml")
    entry = json.loads((out / "platform-entry.json").read_text())
    assert entry == {
        "device_id": "dev-001",
        "kid": "k1",
        "sm4_key": keys["k1"].hex(),
        "device_sm2_public": public,
    }
    for name in ("keys.toml", "device-sm2.toml", "platform-entry.json", "platform-sm2.toml"):
        check_owner_only(out / name)
    load_sm2_pair(out / "platform-sm2.toml")
    assert len(load_sm2_public(out / "platform-sm2.pub.toml")) == 128
    for secret in (keys["k1"].hex(), private):
        assert secret not in result.stdout + result.stderr
    assert "sm3:" in result.stdout
    again = provision("--device-id", "dev-001", "--kid", "k1", "--out", str(out))
    assert again.returncode == 1 and "not overwritten" in again.stderr
    assert load_keys(out / "keys.toml") == keys


def test_provision_usage() -> None:
    assert provision("--kid", "k1").returncode == 2
    assert provision("--device-id", "a|b", "--kid", "k1", "--out", "/nonexistent").returncode == 2
