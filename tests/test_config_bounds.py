"""What ``config check`` accepts, ``run`` can use: every number bounded, TOML
nesting and size bounded, paths and key files checked, each refusal one
``key.path: reason`` line (collector/remote/config_env.py, config/toml_read.py)."""

from __future__ import annotations

import subprocess
import sys
import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import annotated_types
import pytest
from pydantic import BaseModel
from pydantic.fields import FieldInfo

import protocols
from config import toml_read
from config.models import Config
from config.protocol_options import options_model
from hil.stack import ROOT

DEMO = ROOT / "config" / "demo.toml"

#: Numbers checked against a set of values, not a range (the set bounds them).
SET_VALUED = {
    ("PortConfig", "baudrate"): "one of BAUDRATES",
    ("GaugeConfig", "baudrate"): "one of BAUDRATES",
}


def forecourt(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "collector", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


def demo_text(tmp_path: Path, extra: str = "") -> Path:
    """The demo config with its store in ``tmp_path``, ``extra`` appended."""
    text = DEMO.read_text().replace(".demo/store.sqlite", str(tmp_path / "s.sqlite"))
    path = tmp_path / "station.toml"
    path.write_text(text + extra)
    return path


# -- numbers -----------------------------------------------------------------


def _constraints(metadata: list[Any]) -> Iterator[Any]:
    for item in metadata:
        if isinstance(item, FieldInfo):
            yield from _constraints(item.metadata)
        elif isinstance(item, annotated_types.GroupedMetadata):
            yield from item
        else:
            yield item


def _numbers(tp: Any, metadata: list[Any], where: str) -> Iterator[tuple[str, list[Any]]]:
    """(location, constraints) of every int or float inside type ``tp``."""
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        base, *extra = typing.get_args(tp)
        yield from _numbers(base, [*metadata, *extra], where)
    elif origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            yield from _numbers(arg, metadata, where)
    elif origin in (list, tuple):
        for arg in typing.get_args(tp):
            yield from _numbers(arg, [], f"{where}[]")
    elif origin is dict:
        _, value = typing.get_args(tp)
        yield from _numbers(value, [], f"{where}{{}}")
    elif isinstance(tp, type) and issubclass(tp, BaseModel):
        yield from _model_numbers(tp)
    elif tp in (int, float):
        yield where, list(_constraints(metadata))


def _model_numbers(model: type[BaseModel]) -> Iterator[tuple[str, list[Any]]]:
    for name, field in model.model_fields.items():
        if (model.__name__, name) in SET_VALUED:
            continue
        yield from _numbers(field.annotation, list(field.metadata), f"{model.__name__}.{name}")


def _all_numbers() -> list[tuple[str, list[Any]]]:
    found = list(_model_numbers(Config))
    for name in protocols.available():
        cls = protocols.descriptor(name).options
        if cls is not None:
            found += _model_numbers(options_model(protocols.descriptor(name).load("options")))
    return found


def test_every_number_of_the_schema_has_a_lower_and_an_upper_bound() -> None:
    """10^30 records, a 10^300 s reconnect: no number reaches the daemon
    unbounded (each bound a named constant beside its reason in config/)."""
    found = _all_numbers()
    assert len(found) > 60, "the walk reaches the whole schema"
    lower = (annotated_types.Ge, annotated_types.Gt)
    upper = (annotated_types.Le, annotated_types.Lt)
    unbounded = [
        where
        for where, constraints in found
        if not any(isinstance(c, lower) for c in constraints)
        or not any(isinstance(c, upper) for c in constraints)
    ]
    assert unbounded == []


def test_max_records_of_10_to_the_30_is_refused(tmp_path: Path) -> None:
    done = forecourt("config", "check", str(DEMO), "--set", "store.max_records=1" + "0" * 30)
    assert (done.returncode, done.stdout) == (
        2,
        "store.max_records: must be <= 10000000, got 1" + "0" * 30 + "\n",
    )


# -- nesting and size --------------------------------------------------------

DEEP = 2000
DEEP_TEXTS = {
    "array": "[web]\nlisten = " + "[" * DEEP + "]" * DEEP + "\n",
    "inline table": "[web]\nlisten = " + "{a = " * DEEP + "1" + "}" * DEEP + "\n",
    "dotted keys": "[web]\n" + "a." * DEEP + "b = 1\n",
    "table header": "[" + ".".join(["t"] * DEEP) + "]\nb = 1\n",
}
DEEP_LINES = {
    "array": "arrays and tables nested deeper than 16 levels (line {line})",
    "inline table": "arrays and tables nested deeper than 16 levels (line {line})",
    "dotted keys": "keys nested deeper than 16 levels",
    "table header": "keys nested deeper than 16 levels",
}


@pytest.mark.parametrize("kind", list(DEEP_TEXTS))
def test_deep_nesting_is_one_line_in_check_run_and_the_technician_commands(
    tmp_path: Path, kind: str
) -> None:
    """A few KB of nesting were a RecursionError with a 3 000-line traceback."""
    path = demo_text(tmp_path)
    line = path.read_text().count("\n") + 2
    path.write_text(path.read_text() + DEEP_TEXTS[kind])
    reason = DEEP_LINES[kind].format(line=line)
    check = forecourt("config", "check", str(path))
    assert (check.returncode, check.stdout, check.stderr) == (2, f"{path}: {reason}\n", "")
    run = forecourt("run", "--config", str(path))
    assert (run.returncode, run.stderr) == (2, f"{path}: {reason}\n")
    status = forecourt("status", "--config", str(path))
    toml_line = f"forecourt: {path}: not valid TOML: {reason}\n"
    assert (status.returncode, status.stderr) == (2, toml_line)


def test_a_deep_override_is_text_and_a_deep_key_path_is_refused(tmp_path: Path) -> None:
    value = forecourt("config", "check", str(DEMO), "--set", "web.listen=" + "[" * DEEP)
    assert value.returncode == 2
    assert value.stdout.startswith('web.listen: must be "host:port"')
    key = forecourt("config", "check", str(DEMO), "--set", "a." * DEEP + "b=1")
    assert key.returncode == 2
    assert key.stdout.endswith(": key path deeper than 16 levels\n")
    assert key.stdout.count("\n") == 1


def test_a_deep_or_huge_key_file_names_the_key(tmp_path: Path) -> None:
    keys = tmp_path / "keys.toml"
    keys.write_text(DEEP_TEXTS["array"].replace("[web]\n", ""))
    keys.chmod(0o600)
    done = forecourt("config", "check", str(DEMO), "--set", f"uplink.keys_file={keys}")
    assert (done.returncode, done.stdout) == (
        2,
        f"uplink.keys_file: {keys}: not valid TOML: arrays and tables nested deeper than 16"
        " levels (line 1)\n",
    )
    keys.write_bytes(b"#" * (toml_read.MAX_TOML_BYTES + 1))
    done = forecourt("config", "check", str(DEMO), "--set", f"uplink.keys_file={keys}")
    assert done.stdout == f"uplink.keys_file: {keys}: larger than 1024 KiB\n"
    zero = forecourt("config", "check", str(DEMO), "--set", "uplink.keys_file=/dev/null")
    assert zero.stdout.startswith("uplink.keys_file: /dev/null: ")


def test_a_config_over_a_mebibyte_is_one_line(tmp_path: Path) -> None:
    path = demo_text(tmp_path, "#" * toml_read.MAX_TOML_BYTES)
    done = forecourt("config", "check", str(path))
    assert (done.returncode, done.stdout) == (2, f"{path}: larger than 1024 KiB\n")
    endless = forecourt("config", "check", "/dev/zero")  # read within the bound, not forever
    assert (endless.returncode, endless.stdout) == (2, "/dev/zero: larger than 1024 KiB\n")


def test_the_editor_refuses_to_scan_deep_text() -> None:
    """The web page's secret mask scans the text as the parser does (recursively)."""
    from collector.web.secrets_mask import MaskError, mask_checked

    for text in DEEP_TEXTS.values():
        with pytest.raises(MaskError, match="nested deeper than 16 levels"):
            mask_checked(text)


def test_depth_within_bounds_and_brackets_in_strings_are_fine() -> None:
    nested = "a = " + "[" * 16 + "]" * 16 + "\n"
    assert "a" in toml_read.loads(nested)  # the schema's own depth is far less
    quoted = 'a = "' + "[" * 100 + "\"\nb = '''" + "{" * 100 + "'''\n# " + "[" * 100 + "\n"
    assert toml_read.loads(quoted)["a"] == "[" * 100
    with pytest.raises(toml_read.TomlBoundError):
        toml_read.loads("a = " + "[" * 17 + "]" * 17)


# -- paths and files ---------------------------------------------------------


def test_store_path_at_the_config_file_itself_is_refused_and_left_alone(tmp_path: Path) -> None:
    """A slip in the editor: the first start used to rename the config away."""
    path = demo_text(tmp_path)
    before = path.read_bytes()
    done = forecourt("config", "check", str(path), "--set", f"store.path={path}")
    assert (done.returncode, done.stdout) == (
        2,
        f"store.path: {path}: not a collector store (file is not a database); left as it is\n",
    )
    run = forecourt("run", "--config", str(path), "--set", f"store.path={path}")
    assert run.returncode == 2 and run.stderr.startswith("store.path: ")
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["station.toml"]


@pytest.mark.parametrize(
    ("setting", "line"),
    [
        ("store.path={tmp}", "store.path: {tmp}: not a regular file (a store is one SQLite file)"),
        ("ports.0.device={tmp}", "ports.0.device: {tmp}: not a serial device (a character device)"),
        ("uplink.kid=nope", "uplink.kid: no key 'nope' in config/demo-keys.toml"),
        (
            "uplink.device_key_file={tmp}/none",
            "uplink.platform_public_key_file: required with uplink.device_key_file"
            " (platform commands), or set neither",
        ),
        (
            "ota.root={tmp}",
            "ota.release_public_key_file: required with ota.root (or set neither)",
        ),
        ("control.socket=/" + "s" * 107, "control.socket: a unix socket path is at most 107"),
        ("uplink.host=a b", "uplink.host: not a host name or address: 'a b'"),
        ("uplink.reconnect_max_s=1e300", "uplink.reconnect_max_s: must be <= 3600"),
    ],
)
def test_each_refusal_names_its_key(tmp_path: Path, setting: str, line: str) -> None:
    done = forecourt("config", "check", str(DEMO), "--set", setting.format(tmp=tmp_path))
    assert done.returncode == 2, done.stdout
    assert done.stdout.startswith(line.format(tmp=tmp_path)), done.stdout
    assert done.stderr == ""


def test_technician_commands_on_values_of_the_wrong_type_are_one_line_each(
    tmp_path: Path,
) -> None:
    """They read the raw TOML for two paths (no pydantic): a number where a
    path belongs, a table where a list belongs, is a line, not a TypeError."""
    path = tmp_path / "odd.toml"
    path.write_text('ports = 5\nuplink = "x"\n[control]\nsocket = 5\n[store]\npath = [1]\n')
    for command in ("status", "orders", "export", "selftest"):
        done = forecourt(command, "--config", str(path))
        assert "Traceback" not in done.stderr, (command, done.stderr)
        assert done.returncode in (1, 2, 3), (command, done.returncode, done.stderr)
        assert len(done.stderr.splitlines()) <= 1, (command, done.stderr)
    selftest = forecourt("selftest", "--config", str(path))
    assert "FAIL store: no store path" in selftest.stdout
    assert "FAIL keys: no uplink.keys_file" in selftest.stdout


def test_a_bug_is_one_line_and_exit_70(tmp_path: Path) -> None:
    """The safety net of collector/cli.py: what no handler expected is still one
    line (FORECOURT_TRACEBACK=1 shows the traceback for a report)."""
    script = (
        "import sys; from collector import cli; from collector.tools import techcli;"
        " techcli.run = lambda args: 1 / 0;"
        " sys.exit(cli.main(['status', '--socket', 'x', '--store', 'y']))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert (done.returncode, done.stderr) == (
        70,
        "forecourt: internal error: ZeroDivisionError: division by zero"
        " (set FORECOURT_TRACEBACK=1 for the traceback)\n",
    )
