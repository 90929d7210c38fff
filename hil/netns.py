"""Two real links to a platform (SPEC D18): a network namespace holding the
broker and the receiver, reached from the root namespace over two veth pairs,
"wired" and "4g", to one address.

    root namespace                          namespace fcNNNN ("platform")
    fw<tag> 10.X.1.1/24  ──veth──  pw<tag> 10.X.1.2/24 ┐
    f4<tag> 10.X.2.1/24  ──veth──  p4<tag> 10.X.2.2/24 ┴─ lo 10.X.9.1/32 (mosquitto)
    10.X.9.1 via 10.X.1.2 (metric 10), via 10.X.2.2 (metric 20)

Both endpoints are the same broker address, as a platform domain is for a
real gateway: only the interface a socket is bound to (SO_BINDTODEVICE)
decides which link it takes — while both are up, an unbound socket always
takes the wired one. ``cut("wired")`` sets the root side of the pair down
(a pulled cable: the route goes with it); ``restore("wired")`` brings it and
its route back. ``black_hole("wired")`` drops the replies instead, the
interface staying up: only keepalive and timeouts can tell.

Needs root (CAP_NET_ADMIN) and iproute2; :func:`unavailable` says why not.
Every name carries a per-run tag so parallel test workers never meet, and
:meth:`TwoLinks.close` removes everything, also after a failure.
"""

from __future__ import annotations

import getpass
import os
import secrets
import shutil
import socket
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from hil.stack import MOSQUITTO_CANDIDATES, wait_until

BROKER_PORT = 1883


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check, timeout=10)


def unavailable() -> str | None:
    """Why namespaces cannot be built here, or None when they can."""
    if shutil.which("ip") is None:
        return "iproute2 (ip) is not installed"
    if os.geteuid() != 0:
        return "network namespaces need root (CAP_NET_ADMIN)"
    name = f"fcprobe{secrets.token_hex(3)}"
    made = _ip("netns", "add", name, check=False)
    if made.returncode != 0:
        return f"cannot create a network namespace: {made.stderr.strip()}"
    _ip("netns", "del", name, check=False)
    return None


class TwoLinks:
    def __init__(self) -> None:
        tag = secrets.token_hex(3)
        self.netns = f"fc{tag}"
        self.subnet, self._claim = _claim_subnet()
        self.broker_host = f"10.{self.subnet}.9.1"
        self.interfaces = {"wired": f"fw{tag}", "4g": f"f4{tag}"}
        self.local = {"wired": f"10.{self.subnet}.1.1", "4g": f"10.{self.subnet}.2.1"}
        self._peers = {"wired": f"pw{tag}", "4g": f"p4{tag}"}
        self._gateways = {"wired": f"10.{self.subnet}.1.2", "4g": f"10.{self.subnet}.2.2"}
        self._metrics = {"wired": "10", "4g": "20"}
        self._broker: subprocess.Popen[bytes] | None = None
        self._broker_log: IO[bytes] | None = None

    def build(self) -> None:
        n = self.netns
        _ip("netns", "add", n)
        _ip("-n", n, "link", "set", "lo", "up")
        _ip("-n", n, "addr", "add", f"{self.broker_host}/32", "dev", "lo")
        for link in ("wired", "4g"):
            ours, peer = self.interfaces[link], self._peers[link]
            _ip("link", "add", ours, "type", "veth", "peer", "name", peer, "netns", n)
            _ip("addr", "add", f"{self.local[link]}/24", "dev", ours)
            _ip("-n", n, "addr", "add", f"{self._gateways[link]}/24", "dev", peer)
            _ip("-n", n, "link", "set", peer, "up")
            self.restore(link)

    def restore(self, link: str) -> None:
        """The link's interface up and the broker's route through it back."""
        dev = self.interfaces[link]
        _ip("link", "set", dev, "up")
        wait_until(lambda: self.operstate(link) == "up", 10, f"{dev} up")
        _ip("route", "replace", f"{self.broker_host}/32", "via", self._gateways[link],
            "dev", dev, "metric", self._metrics[link])  # fmt: skip

    def cut(self, link: str) -> None:
        """Set the link's interface down (its routes go with it)."""
        _ip("link", "set", self.interfaces[link], "down")

    def black_hole(self, link: str, on: bool = True) -> None:
        """The platform side drops every reply to the link's address while the
        link itself stays up (a dead upstream behind a live modem)."""
        verb = "add" if on else "del"
        _ip("-n", self.netns, "route", verb, "blackhole", f"{self.local[link]}/32")

    def operstate(self, link: str) -> str:
        path = Path("/sys/class/net") / self.interfaces[link] / "operstate"
        return path.read_text().strip()

    def exec_argv(self, argv: Sequence[str]) -> list[str]:
        """``argv`` run inside the platform namespace."""
        return ["ip", "netns", "exec", self.netns, *argv]

    def start_broker(self, work: Path) -> None:
        """mosquitto in the namespace, on the broker address and its loopback."""
        binary = next((p for p in MOSQUITTO_CANDIDATES if os.access(p, os.X_OK)), None)
        binary = binary or shutil.which("mosquitto")
        if binary is None:
            raise RuntimeError("mosquitto is not installed: run `make test` (it installs it)")
        work.mkdir(parents=True, exist_ok=True)
        conf = work / "mosquitto.conf"
        conf.write_text(
            f"listener {BROKER_PORT} {self.broker_host}\n"
            f"listener {BROKER_PORT} 127.0.0.1\n"
            "allow_anonymous true\n"
            f"user {getpass.getuser()}\n"
            "max_queued_messages 100000\n"
            "log_dest stderr\n"
        )
        self._broker_log = open(work / "mosquitto.log", "ab")  # noqa: SIM115 - closed in close()
        self._broker = subprocess.Popen(
            self.exec_argv([binary, "-c", str(conf)]),
            stdout=self._broker_log,
            stderr=self._broker_log,
        )

        def listening() -> bool:
            if self._broker is not None and self._broker.poll() is not None:
                raise RuntimeError(f"mosquitto exited; see {work / 'mosquitto.log'}")
            try:
                socket.create_connection((self.broker_host, BROKER_PORT), timeout=0.5).close()
            except OSError:
                return False
            return True

        wait_until(listening, 10, f"mosquitto on {self.broker_host}:{BROKER_PORT}")

    def close(self) -> None:
        """Stop the broker and remove the namespace and both veth pairs."""
        if self._broker is not None and self._broker.poll() is None:
            self._broker.terminate()
            try:
                self._broker.wait(10)
            except subprocess.TimeoutExpired:
                self._broker.kill()
                self._broker.wait()
        if self._broker_log is not None:
            self._broker_log.close()
        for dev in self.interfaces.values():
            _ip("link", "del", dev, check=False)  # takes its peer with it
        _ip("netns", "del", self.netns, check=False)
        self._claim.unlink(missing_ok=True)


#: Where runs claim their 10.X.0.0/16 (one file per X, created exclusively), so
#: two test workers never draw the same subnet and overwrite each other's route.
CLAIMS = Path("/tmp")
#: Candidate X values: 10.16.0.0 .. 10.215.0.0, clear of the usual 10.0.x LANs.
SUBNET_FIRST, SUBNET_COUNT = 16, 200


def _claim_subnet() -> tuple[int, Path]:
    for _ in range(SUBNET_COUNT):
        x = SUBNET_FIRST + secrets.randbelow(SUBNET_COUNT)
        claim = CLAIMS / f"forecourt-netns-10.{x}.claim"
        try:
            os.close(os.open(claim, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        except FileExistsError:
            continue
        if _ip("route", "show", "root", f"10.{x}.0.0/16", check=False).stdout.strip():
            claim.unlink()  # a network of this machine's own: never used
            continue
        return x, claim
    raise RuntimeError(f"no free 10.X.0.0/16 among {SUBNET_COUNT} (stale claims in {CLAIMS}?)")
