"""uplink/links.py on this machine's own loopback and a temporary sysfs-like
tree (no namespaces needed; the two-link tests are test_failover_netns.py)."""

from __future__ import annotations

import asyncio
import errno
import socket
from pathlib import Path

import aiomqtt
import pytest

from hil.stack import Mosquitto
from uplink import links


def bound_to(sock: socket.socket) -> str:
    """The interface a socket is bound to, as the kernel reports it."""
    raw = sock.getsockopt(socket.SOL_SOCKET, links.SO_BINDTODEVICE, 16)
    return raw.rstrip(b"\0").decode()


def test_interface_states_read_like_the_kernel_writes_them(tmp_path: Path) -> None:
    """``unknown`` (ppp / tun: 4G modems) is not down; a missing interface is."""
    for name, state in [("eth0", "up"), ("eth1", "down"), ("veth0", "lowerlayerdown"),
                        ("ppp0", "unknown"), ("wwan0", "dormant")]:  # fmt: skip
        (tmp_path / name).mkdir()
        (tmp_path / name / "operstate").write_text(state + "\n")
    down = {
        n
        for n in ("eth0", "eth1", "veth0", "ppp0", "wwan0", "usb0")
        if links.interface_down(n, tmp_path)
    }
    assert down == {"eth1", "veth0", "usb0"}
    assert not links.interface_down("lo"), "the real /sys/class/net"


def test_a_connection_bound_to_loopback_works_and_to_no_such_interface_fails(
    broker: Mosquitto,
) -> None:
    with links.open_connection("127.0.0.1", broker.port, "lo", 5) as sock:
        assert sock.getpeername() == ("127.0.0.1", broker.port)
        assert bound_to(sock) == "lo"
    with pytest.raises(OSError) as failed:
        links.open_connection("127.0.0.1", broker.port, "nosuchif0", 5)
    assert failed.value.errno == errno.ENODEV
    assert asyncio.run(links.probe("127.0.0.1", broker.port, "lo"))
    assert not asyncio.run(links.probe("127.0.0.1", broker.port, "nosuchif0"))


def test_an_mqtt_client_bound_to_an_interface_connects_through_it(broker: Mosquitto) -> None:
    """The paho socket seam (links.bind_client) is used by aiomqtt's connect."""

    async def connect(interface: str) -> str:
        client = aiomqtt.Client("127.0.0.1", broker.port, identifier=f"bind-{interface}")
        links.bind_client(client, interface, 5)
        async with client:
            sock = client._client.socket()
            assert isinstance(sock, socket.socket)
            return (
                sock.getsockopt(socket.SOL_SOCKET, links.SO_BINDTODEVICE, 16).rstrip(b"\0").decode()
            )

    assert asyncio.run(connect("lo")) == "lo"
    with pytest.raises(aiomqtt.MqttError):
        asyncio.run(connect("nosuchif0"))
