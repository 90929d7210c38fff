"""The network links under the uplink (SPEC D18): a connection bound to an
interface, a bounded probe of the primary, and an interface's state.

SO_BINDTODEVICE makes "the 4G endpoint" mean the modem, whatever the
routing table says: with the wired and the 4G route both present, an unbound
socket follows the best route and a failover would not change the path at
all. Since Linux 5.7 an unprivileged process may bind a socket that is not
bound yet; older kernels need CAP_NET_RAW.

The policy deciding when to use these is uplink/failover.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from pathlib import Path
from typing import Any

#: Linux's value where the socket module does not export it (it does on Linux
#: since Python 3.3; the fallback keeps type checkers on other systems quiet).
SO_BINDTODEVICE: int = getattr(socket, "SO_BINDTODEVICE", 25)

#: Seconds one probe of the primary may take. A TCP handshake over a working
#: wired link takes milliseconds; 5 s tolerates a loaded broker, and bounds a
#: probe into a black hole that the OS would retry for about two minutes.
PROBE_TIMEOUT_S = 5.0

#: ``operstate`` values under which no packet passes (kernel
#: Documentation/networking/operstates.rst). ``unknown`` is what ppp and tun
#: devices (4G modems) report all the time, so it is not "down"; a missing
#: interface (a USB modem unplugged) is.
DOWN_STATES = frozenset({"down", "lowerlayerdown", "notpresent"})

SYS_CLASS_NET = Path("/sys/class/net")


def open_connection(host: str, port: int, interface: str | None, timeout: float) -> socket.socket:
    """A TCP connection to ``host:port`` leaving through ``interface`` (blocking:
    paho calls it from aiomqtt's connect thread)."""
    error: OSError | None = None
    for family, kind, proto, _, address in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM):
        sock = socket.socket(family, kind, proto)
        try:
            if interface is not None:
                sock.setsockopt(socket.SOL_SOCKET, SO_BINDTODEVICE, interface.encode())
            sock.settimeout(timeout)
            sock.connect(address)
        except OSError as exc:
            sock.close()
            error = exc
            continue
        return sock
    raise error or OSError(f"{host}: no address")


def bind_client(client: Any, interface: str, timeout: float) -> None:
    """Make an ``aiomqtt.Client`` connect through ``interface``.

    Neither aiomqtt nor paho takes a socket option before ``connect()``
    (aiomqtt's ``socket_options`` are set after it, too late to choose the
    path), so the paho client's socket factory — ``_create_socket_connection``,
    present from paho 1.5 to 2.2 — is replaced on this one client instance. A
    paho without it fails every connect through an interface, logged with
    this reason, rather than connecting unbound (the ports keep collecting).
    """
    paho = client._client
    if not callable(getattr(paho, "_create_socket_connection", None)):
        raise OSError("paho-mqtt has no _create_socket_connection: cannot bind to " + interface)

    def create() -> socket.socket:
        return open_connection(paho._host, paho._port, interface, timeout)

    paho._create_socket_connection = create


async def connect(host: str, port: int, interface: str | None) -> socket.socket:
    """A connected non-blocking TCP socket to ``host:port`` leaving through
    ``interface`` (the HTTP transport's; the caller bounds the time)."""
    loop = asyncio.get_running_loop()
    error: OSError | None = None
    for family, kind, proto, _, address in await loop.getaddrinfo(
        host, port, type=socket.SOCK_STREAM
    ):
        sock = socket.socket(family, kind, proto)
        try:
            sock.setblocking(False)
            if interface is not None:
                sock.setsockopt(socket.SOL_SOCKET, SO_BINDTODEVICE, interface.encode())
            await loop.sock_connect(sock, address)
        except OSError as exc:
            sock.close()
            error = exc
            continue
        except BaseException:  # cancelled, timed out: never leak the socket
            sock.close()
            raise
        return sock
    raise error or OSError(f"{host}: no address")


async def probe(host: str, port: int, interface: str | None) -> bool:
    """Does ``host:port`` accept a TCP connection through ``interface``?
    Bounded by :data:`PROBE_TIMEOUT_S`; the connection is closed at once."""
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(PROBE_TIMEOUT_S):
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            for family, kind, proto, _, address in infos:
                with socket.socket(family, kind, proto) as sock:
                    sock.setblocking(False)
                    if interface is not None:
                        sock.setsockopt(socket.SOL_SOCKET, SO_BINDTODEVICE, interface.encode())
                    with contextlib.suppress(OSError):
                        await loop.sock_connect(sock, address)
                        return True
    except (OSError, TimeoutError):
        pass
    return False


def interface_down(name: str, root: Path = SYS_CLASS_NET) -> bool:
    """True when ``name`` is down or gone (``/sys/class/net/NAME/operstate``)."""
    try:
        state = (root / name / "operstate").read_text().strip()
    except OSError:
        return True
    return state in DOWN_STATES
