"""The validated config kept between starts (config/validated_cache.py).

On the emulated gateway pydantic's import and validation were 4.8 s of a
5–8 s start (docs/performance.md, "The gateway"). These tests run the real
``forecourt run`` validating step in a second interpreter, twice, with the
unit's cache directory: the second start of an unchanged config must hand
the daemon the same views without importing pydantic; a changed file, a
changed override, a torn entry or an entry others could write must be
validated afresh.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

from config import validated_cache
from config.handoff import payload_of
from config.loader import load_config

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "config" / "example.toml"


def example_text(tmp_path: Path) -> str:
    """The example config with what a start checks outside it (its key file,
    the store's place) on this machine; everything else as documented."""
    keys = tmp_path / "keys.toml"
    keys.write_text('k1 = "0123456789abcdeffedcba9876543210"\n')
    keys.chmod(0o600)
    text = EXAMPLE.read_text()
    text = text.replace('keys_file = "/etc/forecourt/keys.toml"', f'keys_file = "{keys}"', 1)
    text = text.replace(
        'path = "/var/lib/forecourt/store.sqlite"', f'path = "{tmp_path / "store.sqlite"}"', 1
    )
    return text


#: Runs ``forecourt run`` up to the exec, then reports instead of exec'ing.
PROBE = """
import json, sys
import config.handoff as handoff
from collector import cli

def report(payload, argv):
    print(json.dumps({"pydantic": "pydantic" in sys.modules, "payload": payload.hex()}))
    sys.exit(0)

handoff.exec_payload = report
sys.exit(cli.main(sys.argv[1:]))
"""


def start(config: Path, cache: Path | None, *overrides: str) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if k != validated_cache.CACHE_ENV}
    if cache is not None:
        env[validated_cache.CACHE_ENV] = str(cache)
    argv = [sys.executable, "-c", PROBE, "run", "--config", str(config)]
    for item in overrides:
        argv += ["--set", item]
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    report["payload"] = bytes.fromhex(report["payload"])
    return report


def entries(cache: Path) -> list[Path]:
    return sorted(cache.glob(f"{validated_cache.PREFIX}*"))


def test_an_unchanged_config_starts_without_pydantic(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir(mode=0o700)
    config = tmp_path / "collector.toml"
    config.write_text(example_text(tmp_path))

    first = start(config, cache)
    assert first["pydantic"], "the first start validates"
    assert len(entries(cache)) == 1
    second = start(config, cache)
    assert not second["pydantic"], "an unchanged config must skip pydantic"
    assert second["payload"] == first["payload"]
    views, _version = pickle.loads(second["payload"])
    assert views.device.id == load_config(config).device.id

    # A changed file is validated again, and replaces the entry.
    config.write_text(example_text(tmp_path).replace('id = "sx-ty-0001-gw1"', 'id = "gw-two"', 1))
    third = start(config, cache)
    assert third["pydantic"]
    assert pickle.loads(third["payload"])[0].device.id == "gw-two"
    assert len(entries(cache)) == 1
    # So is a different override of the same file.
    assert start(config, cache, "uplink.port=8883")["pydantic"]
    assert not start(config, cache, "uplink.port=8883")["pydantic"]


def test_an_invalid_config_is_refused_and_never_cached(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir(mode=0o700)
    config = tmp_path / "collector.toml"
    config.write_text(example_text(tmp_path).replace("[device]", "[device]\nbogus = 1", 1))
    env = {**os.environ, validated_cache.CACHE_ENV: str(cache)}
    done = subprocess.run(
        [sys.executable, "-c", PROBE, "run", "--config", str(config)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2 and "device.bogus" in done.stderr
    assert entries(cache) == []


def test_a_torn_or_foreign_entry_is_validated_afresh(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir(mode=0o700)
    config = tmp_path / "collector.toml"
    config.write_text(example_text(tmp_path))
    start(config, cache)
    (entry,) = entries(cache)
    good = entry.read_bytes()

    # A power cut during the write: a short file.
    entry.write_bytes(good[: len(good) // 2])
    assert start(config, cache)["pydantic"]
    assert entry.read_bytes() == good, "rewritten whole"

    # Writable by the group: someone else could have put code in the pickle.
    entry.chmod(0o620)
    assert start(config, cache)["pydantic"]
    # A cache directory others may write is neither read nor written.
    entry.chmod(0o600)
    cache.chmod(0o770)
    assert start(config, cache)["pydantic"]
    assert start(config, cache)["pydantic"]


def test_without_a_cache_directory_every_start_validates(tmp_path: Path) -> None:
    config = tmp_path / "collector.toml"
    config.write_text(example_text(tmp_path))
    assert start(config, None)["pydantic"]
    assert start(config, None)["pydantic"]


def test_the_key_covers_file_overrides_and_version() -> None:
    base = validated_cache.key(b"a = 1\n", ["x=1"], "1.0.0")
    assert base == validated_cache.key(b"a = 1\n", ["x=1"], "1.0.0")
    assert base != validated_cache.key(b"a = 2\n", ["x=1"], "1.0.0")
    assert base != validated_cache.key(b"a = 1\n", ["x=2"], "1.0.0")
    assert base != validated_cache.key(b"a = 1\n", [], "1.0.0")
    assert base != validated_cache.key(b"a = 1\n", ["x=1"], "1.0.1")
    # The parts are length-prefixed: moving bytes between them changes the key.
    assert validated_cache.key(b"ab", ["c"], "v") != validated_cache.key(b"a", ["bc"], "v")


def test_the_kept_payload_is_the_handoff(tmp_path: Path) -> None:
    config = load_config(EXAMPLE)
    payload = payload_of(config, "9.9.9")
    cache = tmp_path / "c"
    cache.mkdir(mode=0o700)
    assert validated_cache.store(cache, "k", payload) is not None
    assert validated_cache.load(cache, "k") == payload
    assert validated_cache.load(cache, "other") is None
