"""The unit's user and umask: the collector as deployed, on real files and sockets.

systemd/forecourt-collector.service runs the daemon as ``User=forecourt``
with ``UMask=0077``, the technician's CLI runs as root or as a member of
the service's group. Here the daemon runs as an unprivileged uid
(``setpriv``, as systemd would switch to it) under each umask a start may
come with — the unit's 077 and a shell's 022 — in a tree laid out as the
unit's directories are (``StateDirectory=``, ``ConfigurationDirectory=``,
``RuntimeDirectory=``, ``CacheDirectory=``, each the service user's, with
the unit's modes). Then:

* every file the daemon made (the store and its ``-wal`` / ``-shm``, the
  run marker, the command replay log, the validated config) is the
  service user's and 0600, the control socket 0660;
* ``forecourt web passwd`` run as root beforehand wrote a hash the daemon
  reads: the technician logs in on the page;
* ``forecourt status`` / ``orders`` as a technician of the service's group
  reach the daemon through its socket; a user outside the group cannot.

Needs root (to switch uids, as systemd does); the machine that runs
``make test`` is root.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from collector.tools.techcli import EXIT_DOWN, EXIT_OK, EXIT_USAGE
from config import atomic, filemodes
from hil import stack
from tests.web_client import Client
from uplink.crypto import sm2_generate

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="switching uids needs root")

NOBODY = pwd.getpwnam("nobody")
#: The service user: nobody stands in for forecourt (its own group).
SERVICE = (NOBODY.pw_uid, NOBODY.pw_gid)
#: A technician in the service's group, and a user outside it (no passwd
#: entry needed: setpriv takes numbers).
TECHNICIAN_UID = OUTSIDER_UID = 64123
PASSWORD = "pump-island-7"
READY_TIMEOUT_S = 60.0


def as_user(uid: int, gid: int, groups: tuple[int, ...] = ()) -> list[str]:
    """The argv prefix that runs a command as ``uid:gid`` with ``groups``."""
    supplementary = f"--groups={','.join(map(str, groups))}" if groups else "--clear-groups"
    return ["setpriv", f"--reuid={uid}", f"--regid={gid}", supplementary]


@functools.cache
def service_python() -> tuple[str, dict[str, str]]:
    """An interpreter the service user can run and the daemon can re-exec
    (``forecourt run`` execs itself: config/handoff.py), with what it needs in
    its environment. The venv's python may sit under a directory only root
    can enter (a pyenv in /root); the system's python of the same version
    then runs with the venv's packages, as the gateway's system python does."""
    candidates = [(sys.executable, {})]
    system = shutil.which("python3", path="/usr/bin:/bin")
    if system is not None:
        site = sysconfig.get_paths()["purelib"]
        candidates.append((system, {"PYTHONPATH": f"{stack.ROOT}:{site}"}))
    probe = (
        "import os, sys, collector.daemon, uplink.mqtt, config.loader;"
        f"assert sys.version_info[:2] == {tuple(sys.version_info[:2])};"
        "os.execv(sys.executable, [sys.executable, '-c', 'import collector.daemon'])"
    )
    tried = []
    for python, env in candidates:
        done = subprocess.run(
            [*as_user(*SERVICE), python, "-c", probe], cwd=stack.ROOT, env={**os.environ, **env},
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        if done.returncode == 0:
            return python, env
        tried.append(f"{python}: {done.stderr.strip()[-300:]}")
    pytest.fail(f"no python the service user can run: {tried}")


def forecourt(*args: str, prefix: tuple[str, ...] = (), stdin: str | None = None,
              umask: int = 0o022) -> subprocess.CompletedProcess[str]:  # fmt: skip
    """``forecourt ARGS`` as root, or as the user ``prefix`` switches to."""
    python, env = service_python() if prefix else (sys.executable, {})
    return subprocess.run(
        [*prefix, python, "-m", "collector", *args], cwd=stack.ROOT, input=stdin,
        env={**os.environ, **env}, capture_output=True, text=True, timeout=60, umask=umask,
    )  # fmt: skip


def owner_and_mode(path: Path) -> tuple[int, int, int]:
    st = path.lstat()
    return st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)


def make_dir(path: Path, owner: tuple[int, int], mode: int) -> Path:
    path.mkdir()
    os.chown(path, *owner)
    path.chmod(mode)
    return path


@pytest.fixture
def base() -> Iterator[Path]:
    """A tree the unprivileged users can reach (pytest's own is root's, 0700)."""
    path = Path(tempfile.mkdtemp(prefix="forecourt-unit-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


# -- files root writes for the service ----------------------------------------


def test_root_writes_a_file_for_the_service_user(base: Path) -> None:
    """config/atomic.py run as root: an owner asked for is set before any
    byte; without one the replaced file's owner is kept, its mode asked for
    or not (the web password hash is written with mode 0600)."""
    service_dir = make_dir(base / "etc", SERVICE, 0o750)
    fresh = service_dir / "keys.toml"
    atomic.write_atomically(fresh, b"k = '00'\n", owner=filemodes.owner_for(fresh))
    assert owner_and_mode(fresh) == (*SERVICE, 0o600)
    atomic.write_atomically(fresh, b"k = '01'\n", mode=0o600)  # replaced by root
    assert owner_and_mode(fresh) == (*SERVICE, 0o600)
    # Who a file goes to: --user, else a non-root owner of the file, else of
    # its directory; the service user of a system that has one, else root.
    rooted = make_dir(base / "root-owned", (0, 0), 0o755)
    assert filemodes.owner_for(rooted / "x", "nobody") == SERVICE
    assert filemodes.owner_for(fresh) == SERVICE
    (rooted / "theirs").write_text("")
    os.chown(rooted / "theirs", *SERVICE)
    assert filemodes.owner_for(rooted / "theirs") == SERVICE
    try:
        service = filemodes.user_ids(filemodes.SERVICE_USER)
    except filemodes.NoSuchUser:
        service = None
    assert filemodes.owner_for(rooted / "new") == service
    with pytest.raises(filemodes.NoSuchUser):
        filemodes.owner_for(rooted / "new", "no-such-user-here")


@pytest.mark.parametrize("umask", [0o077, 0o022])
def test_a_store_made_by_root_is_never_world_readable(base: Path, umask: int) -> None:
    """The store and the replay log, their -wal and -shm: 0600 whatever the umask."""
    from buffer.schema import open_store
    from uplink.commands import ReplayLog

    old = os.umask(umask)
    try:
        db = open_store(base / "store.sqlite")
        replay = ReplayLog(base / "store.sqlite.commands.sqlite")
        assert replay.remember("c1", 2**40, 0)
        made = sorted(p.name for p in base.iterdir())
        modes = {p.name: owner_and_mode(p)[2] for p in base.iterdir()}
        replay.close()
        db.close()
    finally:
        os.umask(old)
    assert made == [
        "store.sqlite", "store.sqlite-shm", "store.sqlite-wal", "store.sqlite.commands.sqlite",
        "store.sqlite.commands.sqlite-shm", "store.sqlite.commands.sqlite-wal",
    ]  # fmt: skip
    assert set(modes.values()) == {0o600}, modes


def test_web_passwd_as_root_writes_a_hash_the_service_can_read(base: Path) -> None:
    """Root with a shell's umask 022: a new hash file in the service's
    directory is the service user's; a root-owned one left by an older
    release is handed over; ``--user`` names the user outright."""
    etc = make_dir(base / "etc", SERVICE, 0o750)
    hash_file = etc / "web-password"
    done = forecourt("web", "passwd", "--file", str(hash_file), stdin=PASSWORD + "\n")
    assert done.returncode == EXIT_OK, done.stderr
    assert done.stdout == f"{hash_file}: password set (owner nobody, mode 0600)\n"
    assert owner_and_mode(hash_file) == (*SERVICE, 0o600)
    os.chown(hash_file, 0, 0)  # what `web passwd` as root used to leave
    done = forecourt("web", "passwd", "--file", str(hash_file), stdin=PASSWORD + "\n")
    assert done.returncode == EXIT_OK and owner_and_mode(hash_file) == (*SERVICE, 0o600)
    elsewhere = make_dir(base / "root-owned", (0, 0), 0o755) / "web-password"
    done = forecourt("web", "passwd", "--file", str(elsewhere), "--user", "nobody",
                     stdin=PASSWORD + "\n")  # fmt: skip
    assert done.returncode == EXIT_OK and owner_and_mode(elsewhere) == (*SERVICE, 0o600)
    done = forecourt("web", "passwd", "--file", str(elsewhere), "--user", "no-such-user-here",
                     stdin=PASSWORD + "\n")  # fmt: skip
    assert (done.returncode, done.stderr) == (
        EXIT_USAGE, "forecourt: --user: no such user: no-such-user-here\n"
    )  # fmt: skip


def test_provision_as_root_into_the_service_directory(base: Path) -> None:
    etc = make_dir(base / "etc", SERVICE, 0o750)
    done = subprocess.run(
        [sys.executable, str(stack.ROOT / "scripts" / "provision"), "--device-id", "gw-1",
         "--kid", "k1", "--out", str(etc)],
        capture_output=True, text=True, timeout=60, umask=0o022,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert owner_and_mode(etc / "keys.toml") == (*SERVICE, 0o600)
    assert owner_and_mode(etc / "device-sm2.toml") == (*SERVICE, 0o600)
    # What the platform registers is no file of the collector's: root's.
    assert owner_and_mode(etc / "platform-entry.json") == (0, 0, 0o600)


# -- the daemon as the service user --------------------------------------------


@dataclass
class Deployed:
    """The unit's directories, each the service user's with the unit's mode."""

    base: Path
    etc: Path  # ConfigurationDirectory= (given to the user by ExecStartPre)
    state: Path  # StateDirectory=
    run: Path  # RuntimeDirectory=
    cache: Path  # CacheDirectory=
    config: Path
    web_port: int

    @property
    def socket(self) -> Path:
        return self.run / "control.sock"


def deploy(base: Path, link: Path) -> Deployed:
    etc = make_dir(base / "etc", SERVICE, 0o750)
    state = make_dir(base / "state", SERVICE, 0o750)
    run = make_dir(base / "run", SERVICE, 0o750)
    cache = make_dir(base / "cache", SERVICE, 0o700)
    private, public = sm2_generate()
    for name, text in (
        ("keys.toml", (stack.ROOT / "config" / "demo-keys.toml").read_text()),
        ("device-sm2.toml", f'private = "{private}"\npublic = "{public}"\n'),
        ("platform.pub.toml", f'public = "{public}"\n'),
    ):
        atomic.write_atomically(etc / name, text.encode(), mode=0o600, owner=SERVICE)
    web_port = stack.free_port()
    text = (stack.ROOT / "config" / "demo.toml").read_text()
    text = text.replace('path = ".demo/store.sqlite"', f'path = "{state / "store.sqlite"}"')
    text = text.replace('device = ".demo/pump1"', f'device = "{link}"')
    text = text.replace('keys_file = "config/demo-keys.toml"', f'keys_file = "{etc / "keys.toml"}"')
    text = text.replace("port = 1883", f"port = {stack.free_port()}")  # no broker: not needed
    text = text.replace(
        "reconnect_min_s = 0.5",
        f'reconnect_min_s = 0.5\ndevice_key_file = "{etc / "device-sm2.toml"}"\n'
        f'platform_public_key_file = "{etc / "platform.pub.toml"}"',
    )
    text += f'\n[control]\nsocket = "{run / "control.sock"}"\n'
    text += f'\n[web]\nlisten = "127.0.0.1:{web_port}"\npassword_file = "{etc / "web-password"}"\n'
    text += '\n[log]\nformat = "json"\n'
    config = etc / "collector.toml"
    atomic.write_atomically(config, text.encode(), mode=0o600, owner=SERVICE)
    return Deployed(base, etc, state, run, cache, config, web_port)


def wait_ready(listener: socket.socket, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    listener.settimeout(0.2)
    while time.monotonic() < deadline:
        try:
            if b"READY=1" in listener.recv(256):
                return
        except TimeoutError:
            assert proc.poll() is None, f"exited with {proc.returncode}: {log.read_text()[-3000:]}"
    raise AssertionError(f"no READY=1 within {READY_TIMEOUT_S:g} s: {log.read_text()[-3000:]}")


@pytest.mark.parametrize("umask", [0o077, 0o022], ids=["umask-077", "umask-022"])
def test_the_daemon_as_the_service_user(base: Path, umask: int) -> None:
    sim = make_dir(base / "sim", (0, 0), 0o755)
    link = sim / "pump1"
    dispenser = stack.dispenser(sim, link, orders=3, nozzles=1, rate=10.0, fill_seconds=0.2)
    os.chown(os.path.realpath(link), *SERVICE)  # the serial line is the service's (dialout)
    box = deploy(base, link)
    # Root sets the web password (as the page tells the technician), with a
    # shell's umask, before the service ever ran.
    done = forecourt("web", "passwd", "--file", str(box.etc / "web-password"),
                     stdin=PASSWORD + "\n")  # fmt: skip
    assert done.returncode == EXIT_OK, done.stderr

    notify = base / "notify"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(notify))
    os.chown(notify, *SERVICE)
    log = base / "daemon.log"
    python, python_env = service_python()
    env = {**os.environ, **python_env, "NOTIFY_SOCKET": str(notify),
           "CACHE_DIRECTORY": str(box.cache), "PYTHONDONTWRITEBYTECODE": "1"}  # fmt: skip
    with open(log, "wb") as out:
        daemon = subprocess.Popen(
            [*as_user(*SERVICE), python, "-m", "collector", "run",
             "--config", str(box.config)],
            cwd=stack.ROOT, env=env, stdout=out, stderr=out, umask=umask,
        )  # fmt: skip
    try:
        wait_ready(listener, daemon, log)
        technician = tuple(as_user(TECHNICIAN_UID, TECHNICIAN_UID, groups=(SERVICE[1],)))
        # The config is the service user's alone (0600): the technician's CLI
        # cannot read it, and asks the socket it is given.
        sock = ("--config", str(box.config), "--socket", str(box.socket))

        def sold() -> bool:
            done = forecourt("orders", *sock, "--json", prefix=technician)
            assert done.returncode == EXIT_OK, done.stderr
            return len(json.loads(done.stdout)) >= 1

        stack.wait_until(sold, 60, "an order, read by the technician through the socket")
        status = forecourt("status", *sock, "--json", prefix=technician)
        assert status.returncode == EXIT_OK and json.loads(status.stdout)["ports_online"] == 1

        outsider = tuple(as_user(OUTSIDER_UID, OUTSIDER_UID))
        refused = forecourt("status", *sock, prefix=outsider)
        assert refused.returncode == EXIT_DOWN and "Permission denied" in refused.stderr
        # Without --socket: the unit's default socket is asked (not this test's).
        default = forecourt("status", "--config", str(box.config), prefix=technician)
        assert default.returncode == EXIT_DOWN, default.stderr
        assert f"{box.config}: Permission denied, so the default socket was asked" in (
            default.stderr
        )

        async def login() -> tuple[int, str]:
            client = Client(box.web_port)
            page = (await client.get("/")).text
            return (await client.login(PASSWORD)).status, page

        login_status, page = asyncio.run(login())
        assert "No password is set" not in page and login_status == 302

        expected = {"store.sqlite", "store.sqlite-wal", "store.sqlite-shm",
                    "store.sqlite.running", "store.sqlite.commands.sqlite"}  # fmt: skip
        made = {p.name: owner_and_mode(p) for p in box.state.iterdir()}
        assert expected <= set(made), sorted(made)
        assert made == {name: (*SERVICE, 0o600) for name in made}
        cached = [owner_and_mode(p) for p in box.cache.iterdir()]
        assert cached and set(cached) == {(*SERVICE, 0o600)}, "the validated config"
        assert owner_and_mode(box.socket) == (*SERVICE, 0o660)

        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(30) == 0, log.read_text()[-3000:]
        assert not (box.state / "store.sqlite.running").exists(), "a clean stop"
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()
        listener.close()
        dispenser.stop()
    assert "Traceback" not in log.read_text()
