"""``forecourt run`` refuses command key files it must not use, with one line
naming the key (D9); ``config check`` refuses them alike."""

from __future__ import annotations

from pathlib import Path

from tests.test_daemon_start import pty_path, start  # noqa: F401 - pty_path is a fixture
from uplink.crypto import sm2_generate

PRIVATE, PUBLIC = sm2_generate()


def files(tmp_path: Path, mode: int) -> list[str]:
    device = tmp_path / "device-sm2.toml"
    device.write_text(f'private = "{PRIVATE}"\npublic = "{PUBLIC}"\n')
    device.chmod(mode)
    platform = tmp_path / "platform.pub.toml"
    platform.write_text(f'public = "{PUBLIC}"\n')
    return [f"uplink.device_key_file={device}", f"uplink.platform_public_key_file={platform}"]


def test_group_readable_device_key_is_refused(tmp_path: Path, pty_path: str) -> None:  # noqa: F811
    done = start(f"store.path={tmp_path}/s.sqlite", f"ports.0.device={pty_path}",
                 *files(tmp_path, 0o640))  # fmt: skip
    assert (done.returncode, done.stderr) == (
        2,
        f"uplink.device_key_file: {tmp_path}/device-sm2.toml: key file mode is 0640, "
        f"readable or writable by group or others; run: chmod 600 {tmp_path}/device-sm2.toml\n",
    )
    assert PRIVATE not in done.stderr + done.stdout


def test_only_one_command_key_file_is_refused(tmp_path: Path, pty_path: str) -> None:  # noqa: F811
    device_only = files(tmp_path, 0o600)[:1]
    done = start(f"store.path={tmp_path}/s.sqlite", f"ports.0.device={pty_path}", *device_only)
    assert (done.returncode, done.stderr) == (
        2,
        "uplink.platform_public_key_file: required with uplink.device_key_file"
        " (platform commands), or set neither\n",
    )
