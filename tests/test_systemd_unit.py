"""The systemd unit and the watchdog (SPEC D7, D17).

``systemd-analyze`` ships with systemd on every Debian machine and gateway
image; on a machine without it there is nothing to check the unit with.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from collector.device import watchdog
from hil import stack

UNIT = stack.ROOT / "systemd" / "forecourt-collector.service"
CLOCK_SOCKET = UNIT.with_name("forecourt-clock.socket")
CLOCK_SERVICE = UNIT.with_name("forecourt-clock@.service")
LAUNCHER = stack.ROOT / "collector" / "ota" / "launcher.py"
CLOCK_HELPER = stack.ROOT / "collector" / "device" / "clock_helper.py"
ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze is not installed")

#: "systemd-analyze security exposure <= 2.0" (docs/security.md has the score).
MAX_EXPOSURE = 2.0


def unit_copy(tmp_path: Path, unit: Path = UNIT) -> Path:
    """The unit with ExecStart's interpreter, launcher and clock helper
    pointing at this machine's python and the repository's files, so
    `verify` checks everything else rather than the install paths."""
    python = Path(getattr(sys, "_base_executable", sys.executable))
    text = unit.read_text().replace("/usr/bin/python3 ", f"{python} ")
    text = text.replace("/usr/lib/forecourt/launcher.py", str(LAUNCHER))
    text = text.replace("/usr/lib/forecourt/clock-helper.py", str(CLOCK_HELPER))
    path = tmp_path / unit.name
    path.write_text(text)
    return path


@needs_analyze
def test_unit_verifies_clean(tmp_path: Path) -> None:
    assert ANALYZE is not None
    paths = [str(unit_copy(tmp_path, unit)) for unit in (UNIT, CLOCK_SOCKET, CLOCK_SERVICE)]
    done = subprocess.run(
        [ANALYZE, "verify", *paths], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert done.returncode == 0 and done.stderr.strip() == "", done.stderr


def exposure(tmp_path: Path, unit: Path) -> float:
    assert ANALYZE is not None
    done = subprocess.run(
        [ANALYZE, "security", "--offline=true", "--no-pager", str(unit_copy(tmp_path, unit))],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    line = next(x for x in done.stdout.splitlines() if "Overall exposure level" in x)
    return float(line.split(":")[1].split()[0])


@needs_analyze
def test_unit_exposure_at_most_2_0(tmp_path: Path) -> None:
    """The collector and its clock helper each (1.5 and 1.5 on systemd 252)."""
    assert exposure(tmp_path, UNIT) <= MAX_EXPOSURE
    assert exposure(tmp_path, CLOCK_SERVICE) <= MAX_EXPOSURE
    text = UNIT.read_text()
    for needed in ("Type=notify", "WatchdogSec=", "Restart=on-failure", "User=forecourt",
                   "SupplementaryGroups=dialout", "DevicePolicy=closed",
                   "RestartForceExitStatus=75", "launcher.py --root"):  # fmt: skip
        assert needed in text


def test_watchdog_beats_only_while_healthy() -> None:
    sent: list[str] = []
    healthy = [True]

    async def scenario() -> None:
        task = asyncio.create_task(watchdog.run(0.02, lambda: healthy[0], sent.append))  # type: ignore[arg-type]
        await asyncio.sleep(0.2)
        beats = len(sent)
        healthy[0] = False  # the store stops answering
        await asyncio.sleep(0.2)
        assert len(sent) == beats, "no beat while the store is unhealthy"
        healthy[0] = True
        await asyncio.sleep(0.2)
        task.cancel()

    asyncio.run(scenario())
    assert len(sent) >= 6 and set(sent) == {"WATCHDOG=1"}


def test_watchdog_interval_from_systemd_environment() -> None:
    assert watchdog.interval_s({"WATCHDOG_USEC": "30000000"}) == 15.0
    assert watchdog.interval_s({}) is None
    assert watchdog.interval_s({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}) is None


def test_daemon_feeds_the_watchdog(tmp_path: Path) -> None:
    """The real collector under a notify socket: READY=1, then WATCHDOG=1 beats."""
    link = tmp_path / "pump1"
    sim = stack.dispenser(tmp_path, link, orders=0, nozzles=1)
    notify_path = tmp_path / "notify"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(notify_path))
    sock.settimeout(30)
    argv = [
        sys.executable,
        "-m",
        "collector",
        "run",
        "--config",
        str(stack.ROOT / "config" / "demo.toml"),
    ]
    for item in (f"store.path={tmp_path}/s.sqlite", f"ports.0.device={link}",
                 f"uplink.port={stack.free_port()}"):  # fmt: skip
        argv += ["--set", item]
    env = {**os.environ, "NOTIFY_SOCKET": str(notify_path), "WATCHDOG_USEC": "400000"}
    proc = subprocess.Popen(argv, cwd=stack.ROOT, env=env, stderr=subprocess.DEVNULL)
    try:
        messages = [sock.recv(64) for _ in range(4)]
        assert messages[0] == b"READY=1"
        assert messages[1:] == [b"WATCHDOG=1"] * 3
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    finally:
        proc.kill()
        sim.stop()
        sock.close()


def settings_of(unit: Path) -> dict[str, list[str]]:
    """Every ``Key=value`` of a unit file, values in order (keys may repeat)."""
    settings: dict[str, list[str]] = {}
    for line in unit.read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            settings.setdefault(key.strip(), []).append(value.strip())
    return settings


def unit_settings() -> dict[str, list[str]]:
    return settings_of(UNIT)


def test_the_cli_finds_the_running_daemon_through_the_unit() -> None:
    """On the gateway the unit (User=forecourt, ProtectSystem=strict) had no
    RuntimeDirectory: /run/forecourt was never made, every start logged
    control_failed, and the CLI's default config was a file the unit does
    not run with. The socket's directory must be the unit's to make, and the
    CLI's defaults the unit's paths."""
    from collector.tools import techcli
    from config.models import ControlConfig

    unit = unit_settings()
    assert unit["RuntimeDirectory"] == ["forecourt"]
    run_dir = Path("/run") / unit["RuntimeDirectory"][0]
    for socket_path in (techcli.DEFAULT_SOCKET, ControlConfig().socket):
        assert Path(socket_path).parent == run_dir, socket_path
    exec_start = unit["ExecStart"][0].split()
    assert Path(exec_start[exec_start.index("--config") + 1]) == techcli.DEFAULT_CONFIG


def test_the_validated_config_cache_is_the_units_own_directory() -> None:
    from config import validated_cache

    unit = unit_settings()
    assert unit["CacheDirectory"] == ["forecourt"]
    # The cache holds a pickle the daemon loads: owner only, and the loader
    # refuses a directory others may write (tests/test_config_cache.py).
    assert unit["CacheDirectoryMode"] == ["0700"]
    assert validated_cache.CACHE_ENV == "CACHE_DIRECTORY"  # what systemd sets


#: Device classes the unit allows → the module that registers the class in
#: /proc/devices (drivers/usb/serial/usb-serial.c registers "ttyUSB",
#: drivers/usb/class/cdc-acm.c "ttyACM"); ttyS, pts, rtc and gpiochip are
#: built into Debian's kernels.
CLASS_MODULES = {"ttyUSB": "usbserial", "ttyACM": "cdc_acm"}


def test_usb_serial_classes_exist_before_the_unit_starts() -> None:
    """systemd resolves DeviceAllow=char-<class> to a major number from
    /proc/devices when the unit starts; on the gateway a USB adapter plugged
    in after the start was refused with EPERM until a restart. The drivers'
    cores are loaded at boot (modules-load.d) and the unit is ordered after."""
    unit = unit_settings()
    classes = {v.split()[0].removeprefix("char-") for v in unit["DeviceAllow"]}
    modules_load = UNIT.with_name("forecourt-serial.conf").read_text().split("\n")
    loaded = {line.strip() for line in modules_load if line.strip() and line[0] != "#"}
    for device_class, module in CLASS_MODULES.items():
        assert device_class in classes
        assert module in loaded, f"{module} (char-{device_class}) is not loaded at boot"
    assert "systemd-modules-load.service" in " ".join(unit["After"])


#: Absolute paths in config/example.toml (set or commented out) that are no
#: directory of the unit's: devices (DeviceAllow=), LEDs (ReadWritePaths=),
#: seal inputs (read only), GPIO chips (the pulse inputs).
OUTSIDE_THE_UNITS_DIRECTORIES = (
    "/dev/tty",
    "/sys/class/leds/",
    "/sys/class/gpio/",
    "/dev/gpiochip",
)


def test_the_service_user_may_open_the_gpio_chips() -> None:
    """libgpiod opens a chip O_RDWR to request its lines: the unit allows
    the class read-write, and the udev rule gives the chips to its user."""
    unit = unit_settings()
    assert "char-gpiochip rw" in unit["DeviceAllow"]
    rules = [
        line
        for line in UNIT.with_name("60-forecourt-gpio.rules").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert rules == [
        f'SUBSYSTEM=="gpio", KERNEL=="gpiochip[0-9]*", OWNER="{unit["User"][0]}", MODE="0600"'
    ]


def test_the_unit_runs_as_its_user_with_its_directories_and_umask() -> None:
    """What makes the deployed unit work, parsed from the unit: the service
    user owns where the socket, the store and the credentials live, every
    default path of the config, the CLI and the models is in one of those
    directories, and the daemon's own umask and service user are the unit's."""
    import tomllib

    from collector.device import clock
    from collector.tools import techcli
    from config import filemodes
    from config.models import ControlConfig, WebConfig

    unit = unit_settings()
    assert unit["User"] == unit["Group"] == [filemodes.SERVICE_USER]
    assert unit["UMask"] == ["0077"] and int(unit["UMask"][0], 8) == filemodes.DAEMON_UMASK
    assert unit["NoNewPrivileges"] == ["yes"] and unit["ProtectSystem"] == ["strict"]
    assert unit["CapabilityBoundingSet"] == [""] and "AmbientCapabilities" not in unit
    state = Path("/var/lib") / unit["StateDirectory"][0]
    config_dir = Path("/etc") / unit["ConfigurationDirectory"][0]
    run_dir = Path("/run") / unit["RuntimeDirectory"][0]
    # Group-readable directories (the forecourt group's technicians reach the
    # socket), nothing for others; the cache holds a pickle: owner only.
    assert unit["StateDirectoryMode"] == unit["ConfigurationDirectoryMode"] == ["0750"]
    assert unit["RuntimeDirectoryMode"] == ["0750"] and unit["CacheDirectoryMode"] == ["0700"]
    # systemd makes /etc/<ConfigurationDirectory> root's: config.set and the
    # web editor replace files in it, so the service user is given it first.
    user = unit["User"][0]
    assert unit["ExecStartPre"] == [f"+/bin/chown {user}:{user} {config_dir}"]

    exec_start = unit["ExecStart"][0].split()
    assert Path(exec_start[exec_start.index("--root") + 1]).parent == state
    assert techcli.DEFAULT_CONFIG.parent == config_dir
    assert Path(techcli.DEFAULT_PASSWORD_FILE).parent == config_dir
    assert Path(WebConfig().password_file).parent == config_dir
    assert Path(ControlConfig().socket).parent == run_dir

    example = (stack.ROOT / "config" / "example.toml").read_text()
    parsed = tomllib.loads(example)
    assert Path(parsed["store"]["path"]).parent == state
    assert Path(parsed["uplink"]["keys_file"]).parent == config_dir
    assert Path(parsed["web"]["password_file"]).parent == config_dir
    assert Path(parsed["control"]["socket"]).parent == run_dir
    homes = (f"{state}/", f"{config_dir}/", f"{run_dir}/", *OUTSIDE_THE_UNITS_DIRECTORIES)
    paths = re.findall(r'= "(/[^"]*)"', example)  # commented-out keys too
    assert len(paths) >= 8 and [p for p in paths if not p.startswith(homes)] == []

    # The clock helper: its socket is the one the collector asks, reachable by
    # the service's group only.
    socket_unit, helper = settings_of(CLOCK_SOCKET), settings_of(CLOCK_SERVICE)
    assert socket_unit["ListenStream"] == [clock.HELPER_SOCKET]
    assert socket_unit["SocketGroup"] == [unit["Group"][0]]
    assert socket_unit["SocketMode"] == ["0660"] and socket_unit["Accept"] == ["yes"]
    assert "forecourt-clock.socket" in unit["Wants"]
    assert helper["CapabilityBoundingSet"] == ["CAP_SYS_TIME"]
    assert helper["PrivateNetwork"] == ["yes"] and "User" not in helper  # root: /dev/rtc0
