"""The hardware-in-the-loop harness: real processes on real pty, TCP and files.

Used by the end-to-end tests and by ``make demo``. Each part runs as its own
process, exactly as on a gateway: a mosquitto broker on loopback, the
dispenser simulator on a pty pair, the collector (``forecourt run``) and the
platform receiver. Fault injection is done to the real thing: the broker is
stopped and started, the collector is SIGKILLed.
"""

from __future__ import annotations

import getpass
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parent.parent

#: Where Debian installs the broker; the Makefile installs it with apt.
MOSQUITTO_CANDIDATES = ("/usr/sbin/mosquitto", "/usr/bin/mosquitto")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.05)


class Proc:
    """A child process whose stdout JSON lines are collected as they come.

    ``tee``: a file every raw stdout line is also appended to (and flushed)
    as it is read, for another process to follow (``hil.atg --sales``)."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log_dir: Path,
        cwd: Path = ROOT,
        tee: Path | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_dir / f"{name}.log"
        self.lines: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._log: IO[str] = open(self.log_path, "a")  # noqa: SIM115 - closed in stop()
        self._tee: IO[str] | None = None if tee is None else open(tee, "a")  # noqa: SIM115
        self.popen = subprocess.Popen(
            self.argv,
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for raw in self.popen.stdout:
            if self._tee is not None:
                self._tee.write(raw)
                self._tee.flush()
            raw = raw.strip()
            if not raw:
                continue
            try:
                line = json.loads(raw)
            except ValueError:
                line = {"text": raw}
            with self._lock:
                self.lines.append(line)

    def snapshot(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.lines)

    def wait_lines(
        self, predicate: Callable[[dict[str, Any]], bool], count: int, timeout: float
    ) -> list[dict[str, Any]]:
        def enough() -> bool:
            if self.popen.poll() is not None and not self._reader.is_alive():
                raise RuntimeError(
                    f"{self.name} exited with {self.popen.returncode}; see {self.log_path}"
                )
            return sum(1 for line in self.snapshot() if predicate(line)) >= count

        wait_until(enough, timeout, f"{count} lines from {self.name} (log: {self.log_path})")
        return [line for line in self.snapshot() if predicate(line)]

    def signal(self, sig: int) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(sig)

    def stop(self, timeout: float = 10.0) -> int:
        self.signal(signal.SIGTERM)
        try:
            rc = self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            rc = self.popen.wait()
        self._reader.join(timeout=2)
        self._log.close()
        if self._tee is not None and not self._reader.is_alive():
            self._tee.close()
        return rc

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        self.popen.wait()
        self._reader.join(timeout=2)


class Mosquitto:
    """A real mosquitto on a loopback port, with persistence so a stopped and
    restarted broker keeps the receiver's persistent session."""

    def __init__(self, work: Path, port: int | None = None, extra: str = "") -> None:
        """``extra``: more lines for mosquitto.conf (an ``acl_file``, say)."""
        self.binary = next((p for p in MOSQUITTO_CANDIDATES if os.access(p, os.X_OK)), None)
        if self.binary is None:
            found = shutil.which("mosquitto")
            if found is None:
                raise RuntimeError("mosquitto is not installed: run `make test` (it installs it)")
            self.binary = found
        self.port = port or free_port()
        self.work = work
        work.mkdir(parents=True, exist_ok=True)
        self.conf = work / "mosquitto.conf"
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\n"
            "allow_anonymous true\n"
            "persistence true\n"
            f"persistence_location {work}/\n"
            # Started as root, mosquitto drops to user "mosquitto", which cannot
            # write the persistence file in our directory: the receiver's session
            # would be lost at a restart. Stay the user who started it.
            f"user {getpass.getuser()}\n"
            "max_queued_messages 100000\n"
            "log_dest stderr\n" + extra
        )
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self) -> None:
        self._log = open(self.work / "mosquitto.log", "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [str(self.binary), "-c", str(self.conf)], stdout=self._log, stderr=self._log
        )

        def listening() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited; see {self.work / 'mosquitto.log'}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
            except OSError:
                return False
            return True

        wait_until(listening, 10, f"mosquitto on port {self.port}")

    def freeze(self) -> None:
        """SIGSTOP: the broker keeps its sockets open and answers nothing."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)  # a frozen broker must hear the TERM
            self.proc.terminate()  # SIGTERM: mosquitto saves its persistence file
            self.proc.wait(10)
        if self._log is not None:
            self._log.close()
        self.proc = None


def dispenser_args(
    link: Path,
    *,
    orders: int,
    nozzles: int = 4,
    rate: float = 10.0,
    seed: int = 1,
    fill_seconds: float = 0.3,
    port_number: int = 1,
    protocol: str = "sinopec",
    extra: Sequence[str] = (),
) -> list[str]:
    """What ``python -m hil.dispenser`` takes (:func:`dispenser`, :func:`rig`)."""
    return [
        "--protocol", protocol, "--link", str(link), "--nozzles", str(nozzles),
        "--orders", str(orders), "--rate", str(rate), "--seed", str(seed),
        "--fill-seconds", str(fill_seconds), "--port-number", str(port_number), *extra,
    ]  # fmt: skip


def bus_args(
    pos: Path, pump: Path, tap: Path, tap_side: str = "both", loop: bool = False
) -> list[str]:
    """What ``python -m hil.bus`` takes (:func:`bus`, :func:`rig`)."""
    return [
        "--pos", str(pos), "--pump", str(pump), "--tap", str(tap), "--tap-side", tap_side,
        *(["--loop"] if loop else []),
    ]  # fmt: skip


def rig(
    work: Path, parts: Sequence[tuple[str, list[str]]], links: Sequence[Path], timeout: float = 60
) -> Proc:
    """Start ``python -m hil.rig``: every part (``dispenser`` / ``pos`` / ``bus`` and its
    arguments) in one process; returns once every one of ``links`` exists."""
    spec = work / "rig.json"
    spec.write_text(json.dumps([[kind, list(argv)] for kind, argv in parts]))
    proc = Proc("rig", [sys.executable, "-m", "hil.rig", str(spec)], work)

    def ready() -> bool:
        if proc.popen.poll() is not None:
            raise RuntimeError(f"the rig exited with {proc.popen.returncode}; see {proc.log_path}")
        return all(link.exists() for link in links)

    wait_until(ready, timeout, f"the rig's {len(links)} links (log: {proc.log_path})")
    return proc


def dispenser(
    work: Path,
    link: Path,
    *,
    orders: int,
    nozzles: int = 4,
    rate: float = 10.0,
    seed: int = 1,
    fill_seconds: float = 0.3,
    port_number: int = 1,
    protocol: str = "sinopec",
    extra: Sequence[str] = (),
    name: str = "dispenser",
) -> Proc:
    """Start ``python -m hil.dispenser``; ``extra`` adds flags (``--pumps 2``, faults)."""
    argv = [sys.executable, "-m", "hil.dispenser"]
    argv += dispenser_args(
        link, orders=orders, nozzles=nozzles, rate=rate, seed=seed, fill_seconds=fill_seconds,
        port_number=port_number, protocol=protocol, extra=extra,
    )  # fmt: skip
    proc = Proc(name, argv, work)
    wait_until(lambda: link.exists(), 10, f"the simulator's link {link}")
    return proc


def pos(
    work: Path,
    link: Path,
    *,
    addresses: str = "1",
    record: Path | None = None,
    poll_ms: int = 30,
    protocol: str = "sinopec",
    extra: Sequence[str] = (),
    master: str = "driver",
) -> Proc:
    """Start ``python -m hil.pos``: a station POS polling through ``link``;
    ``extra`` adds flags (``--commands authorise,price``); ``master="fcc"``:
    Gilbarco polled the way the open FCC does."""
    argv = [
        sys.executable, "-m", "hil.pos", "--protocol", protocol, "--link", str(link),
        "--addresses", addresses, "--poll-ms", str(poll_ms), "--master", master, *extra,
    ]  # fmt: skip
    if record is not None:
        argv += ["--record", str(record)]
    proc = Proc("pos", argv, work)
    wait_until(lambda: link.exists(), 10, f"the POS link {link}")
    return proc


def bus(
    work: Path, *, pos: Path, pump: Path, tap: Path, tap_side: str = "both", loop: bool = False
) -> Proc:
    """Start ``python -m hil.bus``: POS ⇄ pump with a copy of both ways on ``tap``
    (``tap_side="pump"``: only what the pump sends, an RS-422 tap); ``loop``:
    the POS hears its own bytes (a current loop)."""
    argv = [sys.executable, "-m", "hil.bus", *bus_args(pos, pump, tap, tap_side, loop)]
    proc = Proc("bus", argv, work)
    wait_until(lambda: tap.exists(), 10, f"the bus tap {tap}")
    return proc


#: The simulators compress a fill of 2–80 L into a fraction of a second: at a
#: real nozzle's flow every simulated sale would be VOLUME_BEYOND_FLOW. The
#: collectors started here allow the config's highest flow unless the test
#: sets its own (a test of that rule does).
SIMULATED_FLOW_L_PER_MIN = 10_000


def collector(
    work: Path,
    config: Path,
    overrides: Sequence[str],
    name: str = "collector",
    env: Mapping[str, str] | None = None,
) -> Proc:
    """Start ``forecourt run``; its control socket is in ``work`` (tests run side by
    side), unless the config file or ``overrides`` name another. ``env``: added
    to the environment (``FORECOURT_TESTPOINTS``, config/testpoints.py)."""
    argv = [sys.executable, "-m", "collector", "run", "--config", str(config)]
    text = config.read_text()
    own = [] if "[control]" in text else [f"control.socket={work / 'control.sock'}"]
    if "max_flow_l_per_min" not in text and not any("max_flow_l_per_min" in o for o in overrides):
        own.append(f"edge.max_flow_l_per_min={SIMULATED_FLOW_L_PER_MIN}")
    for item in (*own, *overrides):
        argv += ["--set", item]
    return Proc(name, argv, work, env=env)


def receiver(work: Path, broker_port: int, keys: Path, client_id: str = "hil-platform") -> Proc:
    argv = [
        sys.executable, "-m", "hil.platform", "--broker", f"127.0.0.1:{broker_port}",
        "--keys", str(keys), "--client-id", client_id,
    ]  # fmt: skip
    proc = Proc("receiver", argv, work)
    # Subscribed before anything is published: its persistent session exists.
    proc.wait_lines(lambda line: line.get("receiver") == "connected", 1, 20)
    return proc


def atg(
    work: Path,
    *,
    tanks: int,
    link: Path | None = None,
    tcp: int | None = None,
    seed: int = 1,
    speed: float = 1.0,
    scenario: Path | None = None,
    start: str | None = None,
    security_code: str | None = None,
    sales: Path | None = None,
    tank_of: Mapping[str, int] | None = None,
    name: str = "atg",
    extra: Sequence[str] = (),
) -> Proc:
    """Start ``python -m hil.atg`` on a pty (``link``) and/or ``127.0.0.1:tcp``;
    returns once the link exists and the port accepts connections. Its stdout
    (``Proc.lines``) is the ground truth: tanks at start, deliveries as they end,
    the sales it drained. ``sales``: a dispenser's stdout to follow (a
    ``Proc(tee=...)`` file), each sale drained from ``tank_of[nozzle]``.
    ``extra``: more flags (``--alarm-on-usr1 1:9``)."""
    argv = [sys.executable, "-m", "hil.atg", "--tanks", str(tanks), "--seed", str(seed)]
    argv += ["--speed", str(speed)]
    if link is not None:
        argv += ["--link", str(link)]
    if tcp is not None:
        argv += ["--tcp", str(tcp)]
    if scenario is not None:
        argv += ["--scenario", str(scenario)]
    if start is not None:
        argv += ["--start", start]
    if security_code is not None:
        argv += ["--security-code", security_code]
    if sales is not None:
        argv += ["--sales", str(sales)]
    for nozzle, tank in (tank_of or {}).items():
        argv += ["--tank-of", f"{nozzle}={tank}"]
    proc = Proc(name, [*argv, *extra], work)
    if link is not None:
        wait_until(lambda: link.exists(), 10, f"the gauge simulator's link {link}")
    if tcp is not None:
        port = tcp

        def listening() -> bool:
            if proc.popen.poll() is not None:
                raise RuntimeError(f"{name} exited; see {proc.log_path}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            except OSError:
                return False
            return True

        wait_until(listening, 10, f"the gauge simulator on port {tcp}")
    return proc


class Supervised:
    """A process kept running the way the systemd unit keeps the collector:
    started again after :data:`RESTART_DELAY_S` whenever it exits with
    anything but 0 (``Restart=on-failure``; 75, a clean stop asking for a
    restart, included as ``RestartForceExitStatus=75`` says), until
    :meth:`stop`. ``start`` makes one incarnation (the same log name each
    time: the log file is appended to). ``exits``: every exit status seen."""

    #: systemd's RestartSec is 2 s; a shorter pause keeps tests short.
    RESTART_DELAY_S = 0.5
    #: A crash loop in a test is a failure to see, not to sit through.
    MAX_STARTS = 20

    def __init__(self, start: Callable[[], Proc]) -> None:
        self._start = start
        self._lock = threading.Lock()
        self._stopping = False
        self.procs = [start()]
        self.exits: list[int] = []
        self._thread = threading.Thread(target=self._keep_running, daemon=True)
        self._thread.start()

    @property
    def current(self) -> Proc:
        with self._lock:
            return self.procs[-1]

    def _keep_running(self) -> None:
        while True:
            proc = self.current
            rc = proc.popen.wait()
            with self._lock:
                if self._stopping:
                    return
                self.exits.append(rc)
            proc.stop()  # exited already: joins its reader, closes its log
            if rc == 0 or len(self.procs) >= self.MAX_STARTS:
                return
            time.sleep(self.RESTART_DELAY_S)
            with self._lock:
                if self._stopping:
                    return
                self.procs.append(self._start())

    def wait_exits(self, count: int, timeout: float) -> list[int]:
        wait_until(lambda: len(self.exits) >= count, timeout, f"{count} exits of the process")
        return list(self.exits)

    def stop(self) -> int:
        with self._lock:
            self._stopping = True
            proc = self.procs[-1]
        rc = proc.stop()
        self._thread.join(timeout=10)
        return rc
