"""A real clustered broker on loopback: three RabbitMQ 3.10 nodes with the MQTT
plugin, as a province's operators run one (``make cluster-test``, bench/cluster.py).

Debian's ``rabbitmq-server`` (Erlang) is started three times under one
temporary directory, never as the system's service: each node has its own
name (``rabbitN@localhost``), Mnesia and log directories, distribution port,
AMQP and MQTT listeners on 127.0.0.1, and all of them share an ``epmd`` of
their own on a free port (``ERL_EPMD_PORT``) and an Erlang cookie in the
directory (``HOME``), so nothing here meets another RabbitMQ on the machine.
Nodes 2 and 3 join node 1 (``rabbitmqctl join_cluster``). Each node is the
process this module started (``RUNNING_UNDER_SYSTEMD`` makes the start script
``exec`` the Erlang VM, so its PID is the node's): it is killed (SIGKILL, the
node's death), frozen (SIGSTOP) and stopped by that PID, never by name.

``durable_queue_type``: the MQTT plugin's ``mqtt.durable_queue_type`` —
``classic`` (its default: a persistent session's queue lives on one node) or
``quorum`` (replicated over the cluster; clean sessions stay classic).
Retained messages are kept per node (the plugin's default DETS store).
``net_ticktime``: Erlang's, in each node's advanced.config (default 60 s).
"""

from __future__ import annotations

import glob
import os
import secrets
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import IO

from hil.stack import free_port, wait_until

#: Where Debian's rabbitmq-server 3.10 keeps its own start scripts (the ones in
#: /usr/sbin switch to the rabbitmq user and its fixed directories).
SBIN_GLOB = "/usr/lib/rabbitmq/lib/rabbitmq_server-*/sbin"
EPMD = "/usr/bin/epmd"

#: A node's boot on two shared cores: Erlang, Mnesia, the plugin's Ra cluster.
BOOT_TIMEOUT_S = 120.0
#: One rabbitmqctl call: an Erlang VM of its own, started and connected.
CTL_TIMEOUT_S = 90.0


def sbin() -> Path:
    """The rabbitmq-server 3.10 scripts; RuntimeError saying how to get them."""
    found = sorted(glob.glob(SBIN_GLOB))
    if not found or not os.access(EPMD, os.X_OK):
        raise RuntimeError("rabbitmq-server is not installed: `make cluster-test` installs it")
    return Path(found[-1])


def listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
    except OSError:
        return False
    return True


class RabbitNode:
    """One node: its directories, ports and, while running, its process."""

    def __init__(self, cluster: RabbitCluster, index: int) -> None:
        self.cluster = cluster
        self.index = index
        self.name = f"rabbit{index}@localhost"
        self.base = cluster.work / f"node{index}"
        self.base.mkdir(parents=True, exist_ok=True)
        self.mqtt_port = free_port()
        self.amqp_port = free_port()
        self.dist_port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        (self.base / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = 127.0.0.1:{self.amqp_port}\n"
            f"mqtt.listeners.tcp.default = 127.0.0.1:{self.mqtt_port}\n"
            "mqtt.allow_anonymous = true\n"
            f"mqtt.durable_queue_type = {cluster.durable_queue_type}\n"
            "loopback_users = none\n"
            "log.console = false\n"
            "log.file.level = info\n"
        )
        (self.base / "enabled_plugins").write_text("[rabbitmq_mqtt].\n")
        if cluster.net_ticktime is not None:
            (self.base / "advanced.config").write_text(
                f"[{{kernel, [{{net_ticktime, {cluster.net_ticktime}}}]}}].\n"
            )

    @property
    def env(self) -> dict[str, str]:
        b = self.base
        return {
            **self.cluster.env,
            "RABBITMQ_NODENAME": self.name,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.amqp_port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(b / "mnesia"),
            "RABBITMQ_LOG_BASE": str(b / "log"),
            "RABBITMQ_CONFIG_FILE": str(b / "rabbitmq.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(b / "advanced.config"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(b / "enabled_plugins"),
            "RABBITMQ_PID_FILE": str(b / "rabbit.pid"),
            # exec the VM: the PID we hold is the node's.
            "RUNNING_UNDER_SYSTEMD": "true",
            # The distribution listener on loopback only.
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
        }

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        """Start the node's VM (returns at once; :meth:`wait_up` waits for MQTT)."""
        if self.running:
            return
        self._log = open(self.base / "stdout.log", "ab")  # noqa: SIM115 - closed in _reap()
        self.proc = subprocess.Popen(
            [str(self.cluster.sbin / "rabbitmq-server")],
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=self._log,
        )

    def wait_up(self, timeout: float = BOOT_TIMEOUT_S) -> None:
        def up() -> bool:
            if self.proc is None or self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited; see {self.base / 'log'}")
            return listening(self.mqtt_port)

        wait_until(up, timeout, f"{self.name}'s MQTT listener")

    def kill(self) -> None:
        """SIGKILL: the node dies as a machine losing power would leave it."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self._reap(10)

    def freeze(self) -> None:
        """SIGSTOP: the node holds its sockets open and answers nothing."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        """SIGTERM (the VM shuts down cleanly), SIGKILL if it does not."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self._reap(10)

    def _reap(self, timeout: float) -> None:
        if self.proc is not None:
            self.proc.wait(timeout)
        if self._log is not None:
            self._log.close()
            self._log = None
        self.proc = None

    def ctl(self, *args: str, timeout: float = CTL_TIMEOUT_S) -> str:
        """``rabbitmqctl -n <this node> ARGS``; the output, or RuntimeError."""
        done = subprocess.run(
            [str(self.cluster.sbin / "rabbitmqctl"), "-n", self.name, *args],
            env=self.env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if done.returncode != 0:
            raise RuntimeError(f"rabbitmqctl {' '.join(args)} on {self.name}: {done.stderr}")
        return done.stdout


class RabbitCluster:
    """Three (``size``) joined nodes under ``work``; :meth:`close` stops them all."""

    def __init__(
        self,
        work: Path,
        size: int = 3,
        durable_queue_type: str = "classic",
        net_ticktime: int | None = None,
    ) -> None:
        self.sbin = sbin()
        self.work = work
        self.durable_queue_type = durable_queue_type
        #: Erlang's net_ticktime (default 60 s): how long a node that stopped
        #: answering (frozen, not dead) takes to be declared down — the cluster
        #: waits for it meanwhile.
        self.net_ticktime = net_ticktime
        work.mkdir(parents=True, exist_ok=True)
        cookie = work / ".erlang.cookie"
        cookie.write_text(secrets.token_hex(16).upper())
        cookie.chmod(0o400)
        self.epmd_port = free_port()
        self.env = {
            **os.environ,
            "HOME": str(work),
            "ERL_EPMD_PORT": str(self.epmd_port),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            # Not /etc/rabbitmq/rabbitmq-env.conf: nothing of the system's broker.
            "RABBITMQ_CONF_ENV_FILE": str(work / "rabbitmq-env.conf"),
        }
        self.epmd: subprocess.Popen[bytes] | None = None
        self.nodes = [RabbitNode(self, i) for i in range(1, size + 1)]

    def start(self) -> None:
        """epmd, every node, then nodes 2… join node 1; returns when all serve MQTT."""
        self.epmd = subprocess.Popen(
            [EPMD, "-address", "127.0.0.1", "-port", str(self.epmd_port)],
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until(lambda: listening(self.epmd_port), 10, "epmd")
        for node in self.nodes:
            node.start()
        for node in self.nodes:
            node.wait_up()
        first = self.nodes[0]
        for node in self.nodes[1:]:
            node.ctl("stop_app")
            node.ctl("join_cluster", first.name)
            node.ctl("start_app")
            node.wait_up()
        status = first.ctl("cluster_status", "--formatter", "json")
        missing = [n.name for n in self.nodes if n.name not in status]
        if missing:
            raise RuntimeError(f"not in the cluster: {missing}: {status}")

    def restart(self, index: int) -> float:
        """Start a killed node again (it rejoins from its Mnesia directory);
        seconds until its MQTT listener answered."""
        node = self.nodes[index - 1]
        began = time.monotonic()
        node.start()
        node.wait_up()
        return time.monotonic() - began

    def node(self, index: int) -> RabbitNode:
        return self.nodes[index - 1]

    def close(self) -> None:
        for node in self.nodes:
            node.stop()
        if self.epmd is not None and self.epmd.poll() is None:
            self.epmd.terminate()
            self.epmd.wait(10)
        self.epmd = None
