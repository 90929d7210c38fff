"""Config schema, loader, ``--set`` overrides and the ``forecourt`` CLI.

Bad configs go through the real CLI in a subprocess: what a technician sees
(exit status and ``key.path: reason`` lines) is the contract.
"""

from __future__ import annotations

import datetime as dt
import functools
import importlib.metadata
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import protocols
from collector import cli
from config.loader import REDACTED, ConfigError, dump_redacted, load_config
from config.models import Config, PortConfig
from protocols import available

#: Every protocol name a config may use, as the error lists them.
KNOWN = ", ".join(available())

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "config" / "example.toml"
DEMO = ROOT / "config" / "demo.toml"
#: Every protocol name, as the "unknown protocol" errors list them.
KNOWN = ", ".join(protocols.available())

GOOD = """\
[device]
id = "gw-1"
station = "S0001"

[store]
path = "store.sqlite"

[uplink]
keys_file = "keys.toml"
kid = "k1"

[[ports]]
number = 1
device = "/dev/ttyS1"
protocol = "sinopec"
addresses = [1, 2]

[[ports]]
number = 2
device = "/dev/ttyS2"
protocol = "sinopec"
addresses = [3]
"""

#: One mistake of each kind a field check catches.
BAD_FIELDS = """\
[device]
id = "gw/1"
station = ""
timezone = "+8"

[store]

[uplink]
hots = "10.0.0.5"
port = "1883"
keepalive_s = 5
tls = 1
keys_file = "keys.toml"
kid = ""
zip = "gzip"
max_inflight = 21
heartbeat_s = nan

[[ports]]
number = 33
device = "/dev/ttyS1"
protocol = "tokheim"
baudrate = 9601
bytesize = true
parity = "X"
addresses = [1, 0, 100]

[ports.sinopec]
master_address = 0x10
colour = "red"

[[ports]]
number = 2
device = "/dev/ttyS2"
protocol = "sinopec"
addresses = []
stopbits = 1.0
"""

BAD_FIELDS_ERRORS = [
    "device.id: must be 1..64 of A-Z a-z 0-9 _ - (it is the MQTT client id and a topic"
    " segment), got 'gw/1'",
    "device.station: must not be empty",
    "device.timezone: must be a UTC offset +HH:MM or -HH:MM within ±14:00, got '+8'",
    "store.path: required",
    "uplink.port: expected an integer, got '1883'",
    "uplink.keepalive_s: must be >= 10, got 5",
    "uplink.tls: expected true or false, got 1",
    "uplink.kid: must not be empty",
    "uplink.zip: expected 'deflate' or 'none', got 'gzip'",
    "uplink.max_inflight: must be <= 20, got 21",
    "uplink.heartbeat_s: must be a finite number, got nan",
    "uplink.hots: unknown key",
    "ports.0.number: must be <= 32, got 33",
    f"ports.0.protocol: unknown protocol 'tokheim'; known: {KNOWN}",
    "ports.0.baudrate: must be one of 1200, 2400, 4800, 5760, 5787, 9600, 19200, 38400,"
    " 57600, 115200; got 9601",
    "ports.0.bytesize: expected an integer, got true",
    "ports.0.parity: expected 'N', 'E' or 'O', got 'X'",
    "ports.0.addresses.1: must be >= 1, got 0",
    "ports.0.addresses.2: must be <= 99, got 100",
    "ports.0.sinopec.master_address: must be >= 224, got 16",
    "ports.0.sinopec.colour: unknown key",
    "ports.1.stopbits: expected an integer, got 1.0",
    "ports.1.addresses: must have at least 1 item, got 0",
]

#: Cross-field mistakes, reported together with a port's own error.
BAD_CROSS = """\
[device]
id = "gw-1"
station = "S0001"

[store]
path = "store.sqlite"

[uplink]
keys_file = "keys.toml"
kid = "k1"
reconnect_min_s = 2
reconnect_max_s = 1.5

[[ports]]
number = 3
device = "/dev/ttyS1"
protocol = "sinopec"
addresses = [1, 2, 1]

[[ports]]
number = 3
device = "/dev/ttyS1"
protocol = "sinopec"
addresses = [4]
"""

BAD_CROSS_ERRORS = [
    "uplink.reconnect_max_s: must be >= reconnect_min_s (2), got 1.5",
    "ports.0.addresses.2: duplicate address 1",
    "ports.1.number: duplicate port number 3",
    "ports.1.device: duplicate device '/dev/ttyS1'",
]


@functools.cache
def demo_data() -> dict[str, Any]:
    return load_config(DEMO).model_dump()


def forecourt(*args: str) -> subprocess.CompletedProcess[str]:
    """The real CLI, in this interpreter's environment."""
    return subprocess.run(
        [sys.executable, "-m", "collector", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def write(tmp_path: Path, text: str, name: str = "forecourt.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def keys_for_good(tmp_path: Path) -> list[str]:
    """A key file holding GOOD's kid, and the overrides that point GOOD at it
    and at a store in ``tmp_path``: check reads what a config names."""
    keys = tmp_path / "keys.toml"
    keys.write_text('k1 = "00112233445566778899aabbccddeeff"\n')
    keys.chmod(0o600)
    return [f"uplink.keys_file={keys}", f"store.path={tmp_path / 'store.sqlite'}"]


def check_lines(path: Path, *overrides: str) -> tuple[int, list[str]]:
    args = ["config", "check", str(path)]
    for item in overrides:
        args += ["--set", item]
    result = forecourt(*args)
    assert result.stderr == ""
    return result.returncode, result.stdout.splitlines()


# --- shipped files ---------------------------------------------------------


def test_example_validates() -> None:
    config = load_config(EXAMPLE)
    # The first four; then one port per further protocol (its options documented,
    # tests/test_protocol_options.py).
    assert [(p.number, p.device, p.baudrate, p.parity) for p in config.ports[:4]] == [
        (1, "/dev/ttyS1", 9600, "O"),
        (2, "/dev/ttyS2", 5760, "E"),
        (3, "/dev/ttyS3", 9600, "O"),
        (4, "/dev/ttyS4", 5787, "E"),
    ]
    assert [p.protocol for p in config.ports[:4]] == ["sinopec", "sinopec", "dart", "gilbarco"]
    assert config.store.path == Path("/var/lib/forecourt/store.sqlite")
    assert config.uplink.keys_file == Path("/etc/forecourt/keys.toml")
    assert config.uplink.kid == "k1"


def test_demo_validates() -> None:
    dumped = load_config(DEMO).model_dump(mode="json")
    assert dumped["device"] == {"id": "demo-gw-01", "station": "DEMO-0001", "timezone": "+08:00"}
    assert dumped["store"] == {
        "path": ".demo/store.sqlite",
        "max_records": 250_000,
        "retain_per_nozzle": 2000,
        "max_bytes": 100 * 1024 * 1024,
        "evidence_days": 30,
        "evidence_max_bytes": 64 * 1024 * 1024,
    }
    uplink = {k: dumped["uplink"][k] for k in ("host", "port", "keys_file", "kid")}
    assert uplink == {
        "host": "127.0.0.1",
        "port": 1883,
        "keys_file": "config/demo-keys.toml",
        "kid": "demo-k1",
    }
    timing = ("batch_max_records", "heartbeat_s", "reconnect_min_s", "reconnect_max_s")
    assert [dumped["uplink"][k] for k in timing] == [50, 10, 0.5, 5]
    [port] = dumped["ports"]
    keys = ("number", "device", "protocol", "addresses", "poll_interval_ms", "response_timeout_ms")
    assert [port[k] for k in keys] == [1, ".demo/pump1", "sinopec", [1], 100, 300]


@pytest.mark.parametrize("path", [EXAMPLE, DEMO], ids=["example", "demo"])
def test_cli_check_ok(path: Path, tmp_path: Path) -> None:
    # The example names a gateway's files; check reads what a config names
    # (collector/remote/config_env.py), so here they are the demo's.
    sets = [] if path == DEMO else ["uplink.keys_file=config/demo-keys.toml", "uplink.kid=demo-k1"]
    args = [arg for item in sets for arg in ("--set", item)]
    result = forecourt("config", "check", str(path), *args)
    assert (result.returncode, result.stdout, result.stderr) == (0, f"{path}: ok\n", "")


def test_defaults() -> None:
    config = load_config(DEMO)
    assert config.device.tzinfo == dt.timezone(dt.timedelta(hours=8))
    uplink = config.uplink
    assert (uplink.zip, uplink.max_inflight, uplink.password, uplink.tls) == (
        "deflate",
        4,
        None,
        False,
    )
    port = config.ports[0].model_dump(exclude={"number", "device", "protocol", "addresses"})
    assert port == {
        "mode": "poll",
        "pos_device": None,
        "idle_poll_interval_ms": 1000,
        "inter_frame_gap_ms": None,
        "rs485": False,
        "rs485_rts_on_send": True,
        "rs485_delay_before_ms": 0,
        "rs485_delay_after_ms": 0,
        "baudrate": 9600,
        "bytesize": 8,
        "parity": "E",  # demo.toml: Sinopec at its own line setting, 9600 8E1
        "stopbits": 1,
        "nozzles": 16,  # numbered 1..16: another number is NOZZLE_UNKNOWN
        "poll_interval_ms": 100,
        "response_timeout_ms": 300,
        "line_silent_after_s": 10.0,  # SPEC F1, collector/station/linecheck.py
        "line_rewired_after_s": 30.0,
        "sinopec": {
            "master_address": 0xE0,
            "caller_bit_set": True,
            "offline_after": 3,
            "errors_every": 20,
            "totals_every": 100,
            "info_every": 1200,
        },
    }
    assert config.log.model_dump() == {"level": "info", "format": "auto"}
    # A port of another protocol: its own options' defaults, its own line.
    table = {"number": 1, "device": "/dev/ttyS0", "addresses": [1]}
    dart = PortConfig.model_validate({**table, "protocol": "dart"}).model_dump()
    assert dart["dart"] == {
        "offline_after": 3,
        "volume_decimals": 2,
        "amount_decimals": 2,
        "price_decimals": 2,
        "grades": {},
    }
    assert "sinopec" not in dart and "options" not in dart
    gilbarco = PortConfig.model_validate({**table, "protocol": "gilbarco"}).model_dump()
    assert gilbarco["gilbarco"] == {
        "offline_after": 3,
        "volume_decimals": 2,
        "money_decimals": 2,
        "price_decimals": 2,
        "volume_total_decimals": 2,
        "money_total_decimals": 2,
    }


def test_line_settings_default_to_the_protocols_most_common() -> None:
    """Omitted baudrate / bytesize / parity / stopbits: the descriptor's first
    line setting (DART 9600 8O1, Gilbarco 9600 8N1); given ones are kept."""
    table = {"number": 1, "device": "/dev/ttyS0", "addresses": [1]}
    line = ("baudrate", "bytesize", "parity", "stopbits")
    for protocol in protocols.available():
        # A protocol that cannot be polled is relayed (its table needs a POS side).
        mode = {} if protocols.descriptor(protocol).driver else {"mode": "listen"}
        if mode and protocol not in protocols.bus_monitors():
            mode = {"mode": "relay", "pos_device": "/dev/ttyS9"}
        port = PortConfig.model_validate({**table, "protocol": protocol, **mode})
        expected = protocols.descriptor(protocol).default_line
        assert expected is not None, protocol
        assert tuple(getattr(port, k) for k in line) == tuple(getattr(expected, k) for k in line)
    given = PortConfig.model_validate({**table, "protocol": "dart", "parity": "E"})
    assert (given.baudrate, given.parity) == (9600, "E")


# --- bad files through the CLI ---------------------------------------------


def test_cli_reports_every_field_error(tmp_path: Path) -> None:
    assert check_lines(write(tmp_path, BAD_FIELDS)) == (2, BAD_FIELDS_ERRORS)


def test_cli_reports_cross_field_errors_at_the_offending_key(tmp_path: Path) -> None:
    assert check_lines(write(tmp_path, BAD_CROSS)) == (2, BAD_CROSS_ERRORS)


def test_missing_sections_are_required(tmp_path: Path) -> None:
    path = write(tmp_path, '[device]\nid = "gw-1"\n')
    assert check_lines(path) == (
        2,
        ["device.station: required", "store: required", "uplink: required", "ports: required"],
    )


def test_too_many_ports(tmp_path: Path) -> None:
    ports = "".join(
        f'[[ports]]\nnumber = {n % 32 + 1}\ndevice = "/dev/ttyX{n}"\nprotocol = "sinopec"\n'
        "addresses = [1]\n"
        for n in range(33)
    )
    path = write(tmp_path, GOOD.split("[[ports]]")[0] + ports)
    assert check_lines(path) == (
        2,
        ["ports: must have at most 32 items, got 33", "ports.32.number: duplicate port number 1"],
    )


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("nope.toml", None, "no such file"),
        (".", None, "is a directory"),
        (
            "syntax.toml",
            b"[device]\nstation = \n",
            "TOML syntax error: Invalid value (at line 2, column 11)",
        ),
        ("latin1.toml", b'[device]\nstation = "caf\xe9"\n', "not UTF-8 text (byte offset 23)"),
    ],
)
def test_file_problems_are_one_line(
    tmp_path: Path, name: str, content: bytes | None, reason: str
) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    assert check_lines(path) == (2, [f"{path}: {reason}"])


# --- overrides ---------------------------------------------------------------


def test_overrides_typed_values(tmp_path: Path) -> None:
    config = load_config(
        write(tmp_path, GOOD),
        [
            "ports.0.baudrate=4800",  # int
            "uplink.tls=true",  # bool
            "uplink.heartbeat_s=2.5",  # float
            "uplink.host=10.0.0.5",  # not TOML: plain text
            'uplink.username="collector"',  # quoted string
            "ports.1.addresses=[7, 8]",  # array
            "ports.1.sinopec={caller_bit_set = false}",  # inline table
            "log.level=debug",  # a table the file does not have
            " device.station = 140100001 ",  # digits where a string is wanted
            "uplink.password=",  # empty text
        ],
    )
    assert config.ports[0].baudrate == 4800
    assert config.uplink.tls is True
    assert config.uplink.heartbeat_s == 2.5
    assert config.uplink.host == "10.0.0.5"
    assert config.uplink.username == "collector"
    assert config.ports[1].addresses == [7, 8]
    assert config.ports[1].options.caller_bit_set is False
    assert config.log.level == "debug"
    assert config.device.station == "140100001"
    assert config.uplink.password is not None
    assert config.uplink.password.get_secret_value() == ""


def test_override_later_wins(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, GOOD), ["uplink.port=1", "uplink.port=2"])
    assert config.uplink.port == 2


def test_override_errors_look_like_file_errors(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    assert check_lines(
        path,
        "uplink.hots=10.0.0.5",
        "ports.1.baudrate=4801",
        "uplink.port=0",
        "uplink.tls=yes",
        "ports.0.parity=e",
    ) == (
        2,
        [
            "uplink.port: must be >= 1, got 0",
            "uplink.tls: expected true or false, got 'yes'",
            "uplink.hots: unknown key",
            "ports.0.parity: expected 'N', 'E' or 'O', got 'e'",
            "ports.1.baudrate: must be one of 1200, 2400, 4800, 5760, 5787, 9600, 19200,"
            " 38400, 57600, 115200; got 4801",
        ],
    )


def test_override_can_make_duplicates(tmp_path: Path) -> None:
    assert check_lines(write(tmp_path, GOOD), "ports.1.number=1") == (
        2,
        ["ports.1.number: duplicate port number 1"],
    )


def test_malformed_overrides(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    assert check_lines(
        path,
        "uplink.port",
        "=5",
        "uplink..port=5",
        "ports.2.number=3",
        "ports.first.number=3",
        "uplink.kid.name=x",
        "uplink.port=1",  # fine: only the malformed ones are reported
    ) == (
        2,
        [
            "--set uplink.port: expected key.path=value",
            "--set =5: empty key path",
            "--set uplink..port=5: empty segment in key path",
            "--set ports.2.number=3: index 2 out of range (ports has 2 items)",
            "--set ports.first.number=3: ports is an array: expected an index, got 'first'",
            "--set uplink.kid.name=x: uplink.kid is not a table or an array",
        ],
    )


def test_override_ok_through_cli(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    sets = keys_for_good(tmp_path)
    assert check_lines(path, *sets, "uplink.host=broker.local", "ports.0.baudrate=5760") == (
        0,
        [f"{path}: ok"],
    )


def test_config_error_lines_in_process(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, GOOD), ["ports.0.protocol=tokheim"])
    assert caught.value.errors == [f"ports.0.protocol: unknown protocol 'tokheim'; known: {KNOWN}"]
    assert str(caught.value) == caught.value.errors[0]


# --- models ------------------------------------------------------------------


@given(st.integers(min_value=-14 * 60, max_value=14 * 60))
def test_timezone_round_trip(minutes: int) -> None:
    sign = "-" if minutes < 0 else "+"
    text = f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"
    device = {"id": "g", "station": "s", "timezone": text}
    config = Config.model_validate({**demo_data(), "device": device})
    assert config.device.tzinfo.utcoffset(None) == dt.timedelta(minutes=minutes)


@pytest.mark.parametrize("text", ["+14:01", "-15:00", "+08:60", "08:00", "+8:00", "Z"])
def test_bad_timezones(tmp_path: Path, text: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, GOOD), [f'device.timezone="{text}"'])
    assert caught.value.errors == [
        f"device.timezone: must be a UTC offset +HH:MM or -HH:MM within ±14:00, got {text!r}"
    ]


@pytest.mark.parametrize("device_id", ["a/b", "a+b", "a#b", "a b", "", "x" * 65])
def test_bad_device_ids(tmp_path: Path, device_id: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, GOOD), [f"device.id={json.dumps(device_id)}"])
    assert caught.value.errors == [
        "device.id: must be 1..64 of A-Z a-z 0-9 _ - (it is the MQTT client id and a topic"
        f" segment), got {device_id!r}"
    ]


# --- redaction ---------------------------------------------------------------


def test_dump_redacted_hides_the_password(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, GOOD), ["uplink.password=s3cret-pw"])
    dumped = dump_redacted(config)
    assert dumped["uplink"]["password"] == REDACTED == "***"
    text = json.dumps(dumped)
    assert "s3cret-pw" not in text
    assert dumped["store"]["path"] == "store.sqlite"
    assert dumped["ports"][1]["sinopec"]["master_address"] == 0xE0
    # The dump is a valid config again, except for the redacted secret.
    dumped["uplink"]["password"] = "other"
    assert Config.model_validate(dumped).uplink.kid == "k1"


def test_dump_redacted_without_password() -> None:
    assert dump_redacted(load_config(DEMO))["uplink"]["password"] is None


# --- cli ---------------------------------------------------------------------


def test_version() -> None:
    result = forecourt("--version")
    expected = f"forecourt {importlib.metadata.version('forecourt-collector')}\n"
    assert (result.returncode, result.stdout, result.stderr) == (0, expected, "")


def test_usage_errors_return_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([]) == 2
    assert cli.main(["config"]) == 2
    assert cli.main(["run"]) == 2  # --config is required
    capsys.readouterr()


def test_run_bad_config_exits_2_on_stderr(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["run", "--config", str(tmp_path / "nope.toml")]) == 2
    out, err = capsys.readouterr()
    assert (out, err) == ("", f"{tmp_path / 'nope.toml'}: no such file\n")


#: Put first on PYTHONPATH by the test below: in the exec'd daemon (and only
#: there: it has ``--validated-fd``) it stands in for ``collector.daemon``
#: and prints what the daemon was handed.
FAKE_DAEMON = """
import json, os, sys, types
if "--validated-fd" in sys.argv:
    def run_daemon(config, config_path=None, overrides=()):
        print(json.dumps({
            "overrides": list(overrides),
            "pid": os.getpid(), "format": config.log.format, "id": config.device.id,
            "path": str(config_path), "tz": str(config.device.tzinfo),
            "keys_file": str(config.uplink.keys_file), "type": type(config).__name__,
            "pydantic": sorted(m for m in sys.modules if m.startswith("pydantic")),
            "metadata": "importlib.metadata" in sys.modules,
            "version": __import__("collector").version(),
        }), flush=True)
        return 7
    fake = types.ModuleType("collector.daemon")
    fake.run_daemon = run_daemon
    sys.modules["collector.daemon"] = fake
"""


def test_run_hands_the_config_to_the_daemon(tmp_path: Path) -> None:
    """``forecourt run`` validates, then execs the daemon in its place (same PID)
    with the validated config, overrides applied, and no pydantic."""
    (tmp_path / "fake").mkdir()
    (tmp_path / "fake" / "sitecustomize.py").write_text(FAKE_DAEMON)
    path = write(tmp_path, GOOD)
    keys_for_good(tmp_path)  # GOOD's relative keys.toml and store, from cwd
    proc = subprocess.Popen(
        [sys.executable, "-m", "collector", "run", "--config", str(path),
         "--set", "log.format=json", "--set", "device.timezone=-03:30"],
        cwd=tmp_path, stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(tmp_path / "fake")},
    )  # fmt: skip
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 7, out
    handed = json.loads(out)
    assert handed == {
        "overrides": ["log.format=json", "device.timezone=-03:30"],  # config.set uses them
        "pid": proc.pid,
        "format": "json",
        "id": "gw-1",
        "path": str(path),
        "tz": "UTC-03:30",
        "keys_file": "keys.toml",
        "type": "Config",
        "pydantic": [],
        "metadata": False,  # the version came with the config
        "version": importlib.metadata.version("forecourt-collector"),
    }


@pytest.mark.parametrize(
    ("port", "error"),
    [
        ({"mode": "relay"}, "ports.0.pos_device: relay mode needs the POS side's device"),
        ({"pos_device": "/dev/ttyS9"}, "ports.0.pos_device: only a relay has a POS side"),
        ({"mode": "listen", "protocol": "lanfeng"}, "ports.0.mode: a lanfeng bus cannot"),
        ({"mode": "relay", "pos_device": "/dev/ttyS0"}, "ports.0.pos_device: duplicate device"),
    ],
)
def test_port_modes_are_checked(tmp_path: Path, port: dict[str, object], error: str) -> None:
    """relay needs both sides, listen needs a bus monitor (SPEC D19, D20)."""
    table = {"number": 1, "device": "/dev/ttyS0", "protocol": "sinopec", "addresses": [1]}
    table.update(port)
    lines = "\n".join(f"{k} = {json.dumps(v)}" for k, v in table.items())
    path = tmp_path / "c.toml"
    path.write_text(MINIMAL_FOR_MODES + "[[ports]]\n" + lines + "\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert any(line.startswith(error) for line in str(info.value).splitlines()), str(info.value)


MINIMAL_FOR_MODES = """
[device]
id = "gw"
station = "S"
[store]
path = "s.sqlite"
[uplink]
keys_file = "k.toml"
kid = "k1"
"""
