"""Boot the gateway image under qemu-system-arm (TCG) and talk to it.

The machine: ``-M virt,highmem=off -cpu cortex-a7 -smp 1`` with 128 MB (or
64), the disk on virtio-blk with ``cache=none``, the network QEMU's
user-mode stack with ``restrict=on`` (the guest reaches nothing) plus one
``guestfwd`` per host loopback port the test names (the broker), each
connection relayed by hil/gateway/relay.py. Nested KVM hangs on this host;
TCG is an estimate of a slow ARM, not a real ARM.

Serial lines: ports 1–4 are a ``pci-serial-4x`` card (16550 UARTs, the
guest's ttyS0–3), ports 5 and up USB serial adapters (``usb-serial``, FTDI,
ttyUSB*) on ``qemu-xhci`` controllers, each with its own serial number so
the guest names it ``/dev/serial/by-id/…-P05…`` whatever order the adapters
enumerate in. Every line is ``-chardev serial`` on the host pty a
``hil/dispenser`` simulator holds. Every port of the card has a chardev (a
null one when unused): otherwise the guest reads received bytes in 8-byte
FIFO chunks hundreds of ms late (/work/shared/gateway-measured.md).

The harness reaches the guest through an agent on a virtio serial port
(guest/gateway-agent.py, started by guest/gateway-shell.service) over a
unix socket: :meth:`Gateway.sh` runs one shell command as root and returns
its exit status and output (one JSON line each way).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hil.gateway.image import PortLine

QEMU = "qemu-system-arm"
#: The card's ports, then USB adapters: ports 1-4 are ttyS0-3.
CARD_PORTS = 4
#: USB2 root ports per xhci controller (qemu-xhci's maximum is 15).
XHCI_PORTS = 15
#: The address the guest reaches the host's broker at (guestfwd).
BROKER_GUEST = ("10.0.2.100", 1883)
#: Boot (≈ 30 s under TCG) and the unit's start on a busy host: generous.
BOOT_TIMEOUT_S = 600
RELAY = Path(__file__).with_name("relay.py")
#: A niceness for qemu (e.g. -5 as root): on a host shared with busy test
#: suites a starved TCG guest boots in minutes instead of seconds.
NICE_ENV = "FORECOURT_GATEWAY_NICE"
#: The release's own CLI in the image (collector/ota/install.py's venv).
FORECOURT = "/var/lib/forecourt/ota/current/venv/bin/forecourt"


def port_device(number: int) -> str:
    """The guest device of dispenser line ``number`` (1-based)."""
    if number <= CARD_PORTS:
        return f"/dev/ttyS{number - 1}"
    return f"/dev/serial/by-id/usb-QEMU_QEMU_USB_SERIAL_P{number:02d}-if00-port0"


def port_lines(count: int) -> list[PortLine]:
    return [PortLine(n, port_device(n)) for n in range(1, count + 1)]


@dataclass
class Gateway:
    """One VM: started with :meth:`boot`, killed with :meth:`kill` (a power cut)."""

    work: Path
    kernel: Path
    initrd: Path
    disk: Path
    links: list[Path]
    broker_port: int
    memory_mb: int = 128
    #: Lines whose USB adapter is not plugged in at power-on (:meth:`plug_usb_serial`).
    unplugged: tuple[int, ...] = ()
    proc: subprocess.Popen[bytes] | None = None
    boots: int = 0
    _shell: socket.socket | None = field(default=None, repr=False)
    _buffer: bytes = b""
    _count: itertools.count[int] = field(default_factory=itertools.count)

    def command_line(self) -> list[str]:
        append = "root=/dev/vda rw console=ttyAMA0 panic=-1 quiet"
        if self.memory_mb < 100:
            # The armmp kernel reserves 16 MB for CMA: a 64 MB guest panics
            # unpacking the initrd; one udev worker at a time.
            append += " cma=0 udev.children_max=1"
        relay = f"cmd:{sys.executable} {RELAY} 127.0.0.1 {self.broker_port}"
        argv = [
            QEMU, "-M", "virt,highmem=off", "-cpu", "cortex-a7", "-smp", "1",
            "-m", str(self.memory_mb), "-no-reboot", "-display", "none", "-monitor", "none",
            "-kernel", str(self.kernel), "-initrd", str(self.initrd), "-append", append,
            "-chardev", f"file,id=console,path={self.work / 'console.log'}",
            "-serial", "chardev:console",
            "-drive", f"if=none,id=disk,file={self.disk},format=raw,cache=none,aio=threads",
            "-device", "virtio-blk-device,drive=disk",
            "-netdev", f"user,id=net,restrict=on,guestfwd=tcp:{BROKER_GUEST[0]}:"
                       f"{BROKER_GUEST[1]}-{relay}",
            "-device", "virtio-net-device,netdev=net",
            "-chardev", f"socket,id=shell,path={self.work / 'shell.sock'},server=on,wait=off",
            "-device", "virtio-serial-device",
            "-device", "virtserialport,chardev=shell,name=org.forecourt.shell",
            "-qmp", f"unix:{self.work / 'qmp.sock'},server=on,wait=off",
        ]  # fmt: skip
        card = []
        for i in range(CARD_PORTS):
            if i < len(self.links):
                argv += ["-chardev", f"serial,id=s{i},path={self.links[i]}"]
            else:
                argv += ["-chardev", f"null,id=s{i}"]
            card.append(f"chardev{i + 1}=s{i}")
        argv += ["-device", "pci-serial-4x," + ",".join(card)]
        usb = self.links[CARD_PORTS:]
        for c in range((len(usb) + XHCI_PORTS - 1) // XHCI_PORTS):
            argv += ["-device", f"qemu-xhci,id=xhci{c},p2={XHCI_PORTS},p3=1"]
        for j, link in enumerate(usb):
            number = CARD_PORTS + j + 1
            if number in self.unplugged:
                continue
            argv += [
                "-chardev", f"serial,id=u{number},path={link}",
                "-device", f"usb-serial,bus=xhci{j // XHCI_PORTS}.0,chardev=u{number},"
                           f"serial=P{number:02d}",
            ]  # fmt: skip
        return argv

    def boot(self) -> None:
        """Start qemu (a power-on) and connect the shell; does not wait for the unit."""
        assert self.proc is None
        for name in ("shell.sock", "qmp.sock"):
            (self.work / name).unlink(missing_ok=True)
        self.boots += 1
        log = open(self.work / f"qemu-{self.boots}.log", "wb")  # noqa: SIM115 - the child's
        nice = int(os.environ.get(NICE_ENV, "0"))
        self.proc = subprocess.Popen(
            self.command_line(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            preexec_fn=(lambda: os.nice(nice)) if nice else None,
        )  # fmt: skip
        log.close()
        deadline = time.monotonic() + 30
        while not (self.work / "shell.sock").exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"qemu did not start: {self.work}/qemu-{self.boots}.log")
            time.sleep(0.1)
        self._shell = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._shell.connect(str(self.work / "shell.sock"))
        self._buffer = b""

    def kill(self) -> None:
        """SIGKILL qemu: what the guest had not written to the disk is gone."""
        if self._shell is not None:
            self._shell.close()
            self._shell = None
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            self.proc = None

    def poweroff(self, timeout: float = 180) -> None:
        """A clean shutdown (the file system is left clean for e2fsck)."""
        if self.proc is None:
            return
        with contextlib.suppress(Exception):
            self.sh("systemctl poweroff --no-block", timeout=30)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout)
        self.kill()

    # --- the shell -----------------------------------------------------------

    def sh(self, command: str, timeout: float = 120) -> tuple[int, str]:
        """Run ``command`` in the guest as root: (exit status, stdout+stderr)."""
        assert self._shell is not None, "not booted"
        n = next(self._count)
        request = {"id": n, "cmd": command, "timeout": timeout}
        self._shell.sendall(json.dumps(request).encode() + b"\n")
        deadline = time.monotonic() + timeout + 10
        self._shell.settimeout(1.0)
        while True:
            while b"\n" in self._buffer:
                line, self._buffer = self._buffer.split(b"\n", 1)
                with contextlib.suppress(ValueError):
                    reply = json.loads(line)
                    if reply.get("id") == n:
                        return int(reply["rc"]), str(reply["out"])
            if time.monotonic() > deadline:
                raise TimeoutError(f"guest agent: no answer to {command!r} in {timeout:.0f} s")
            with contextlib.suppress(TimeoutError, socket.timeout):
                chunk = self._shell.recv(65536)
                if not chunk:
                    raise ConnectionError("guest agent closed")
                self._buffer += chunk

    def check(self, command: str, timeout: float = 120) -> str:
        rc, out = self.sh(command, timeout)
        if rc != 0:
            raise RuntimeError(f"guest: {command!r} exited {rc}: {out[-2000:]}")
        return out

    def wait_shell(self, timeout: float = BOOT_TIMEOUT_S) -> float:
        """Seconds from now until the guest's shell answers."""
        print(f"gateway: boot {self.boots}: waiting for the guest", file=sys.stderr, flush=True)
        began = time.monotonic()
        deadline = began + timeout
        while True:
            try:
                self.sh("true", timeout=3)
                return time.monotonic() - began
            except TimeoutError:
                if self.proc is None or self.proc.poll() is not None:
                    raise RuntimeError(f"qemu exited; see {self.work}/console.log") from None
                if time.monotonic() > deadline:
                    raise

    def unit(self, *props: str) -> dict[str, str]:
        out = self.check(f"systemctl show forecourt-collector -p {','.join(props)}")
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def wait_ready(self, timeout: float = BOOT_TIMEOUT_S) -> dict[str, str]:
        """Until the unit is active (Type=notify: READY=1 was sent)."""
        deadline = time.monotonic() + timeout
        while True:
            state = self.unit("ActiveState", "SubState", "NRestarts")
            if state.get("ActiveState") == "active":
                return state
            if time.monotonic() > deadline:
                _rc, journal = self.sh("journalctl -u forecourt-collector -n 40 --no-pager")
                raise TimeoutError(
                    f"the unit is not READY after {timeout:.0f} s: {state}\n{journal}"
                )
            time.sleep(2)

    def qmp(self, *commands: dict[str, Any]) -> list[dict[str, Any]]:
        """Run QMP commands (``{"execute": …, "arguments": …}``); their replies."""
        replies = []
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.connect(str(self.work / "qmp.sock"))
            reader = s.makefile("rb")
            json.loads(reader.readline())  # the greeting
            for command in ({"execute": "qmp_capabilities"}, *commands):
                s.sendall(json.dumps(command).encode() + b"\n")
                while True:
                    reply = json.loads(reader.readline())
                    if "return" in reply or "error" in reply:
                        break  # events are skipped
                replies.append(reply)
        return replies[1:]

    def plug_usb_serial(self, number: int, link: Path) -> list[dict[str, Any]]:
        """Plug in a USB serial adapter for line ``number`` while the guest runs."""
        return self.qmp(
            {"execute": "chardev-add", "arguments": {"id": f"u{number}", "backend": {
                "type": "serial", "data": {"device": str(link)}}}},
            {"execute": "device_add", "arguments": {
                "driver": "usb-serial", "bus": "xhci0.0", "chardev": f"u{number}",
                "serial": f"P{number:02d}", "id": f"usb{number}"}},
        )  # fmt: skip

    def boot_figures(self) -> dict[str, Any]:
        """The unit's own start at boot: inactive → active (READY=1), from systemd."""
        unit = self.unit("InactiveExitTimestampMonotonic", "ActiveEnterTimestampMonotonic",
                         "NRestarts", "MainPID")  # fmt: skip
        began = int(unit["InactiveExitTimestampMonotonic"])
        ready = int(unit["ActiveEnterTimestampMonotonic"])
        return {
            "unit_start_to_ready_s": round((ready - began) / 1e6, 1),
            "ready_after_kernel_start_s": round(ready / 1e6, 1),
            "restarts": int(unit["NRestarts"]),
            "pid": int(unit["MainPID"]),
        }

    def journal(self, lines: int = 200) -> str:
        return self.sh(f"journalctl -u forecourt-collector -n {lines} --no-pager -o cat")[1]

    def json_lines(self, command: str) -> list[dict[str, object]]:
        out = self.check(command)
        return [json.loads(x) for x in out.splitlines() if x.startswith("{")]
