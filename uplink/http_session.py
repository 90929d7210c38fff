"""One session on an HTTP(S) endpoint: the second road to the platform (SPEC D3).

The uplink's loop (uplink/mqtt.py ``Uplink.run``) runs this instead of an
MQTT session when the failover policy's endpoint is ``http://`` or
``https://``; everything around it is the same — the endpoint order, the
backoff, the return to the primary by probes, the link alarms. Side by side
from the moment the connection is up:

- the POST loop (uplink/http_link.py) and the one sender shared with MQTT
  (``Uplink._sender``), so the envelopes, their seal and their order are
  MQTT's;
- a heartbeat every ``heartbeat_s``, riding with the next POST;
- the command URL polled every ``http_command_poll_s`` (only HTTP is up: an
  MQTT endpoint that worked would be the one in use), commands checked by the
  same worker as MQTT's;
- the bound interface watched, and, on a backup, the primary probed.

"Connected" is the TCP connection (and TLS handshake) made: the first
request goes at once (the heartbeat), so an intake that refuses requests is
left after its first answers like a broker that refuses a CONNECT.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

import structlog

from uplink import session
from uplink.failover import Endpoint
from uplink.http_client import HttpConnection, tls_context
from uplink.http_link import HttpLink

if TYPE_CHECKING:
    from uplink.batching import BatchLink
    from uplink.command_channel import CommandChannel
    from uplink.failover import FailoverPolicy
    from uplink.settings import UplinkSettings, UplinkStats
    from uplink.transport import AckClock

log = structlog.get_logger("uplink")


class Running(Protocol):
    """What the HTTP session needs of the running uplink (uplink/mqtt.py
    ``Uplink``, which imports this module: the session names what it uses
    instead of importing its owner)."""

    settings: UplinkSettings
    stats: UplinkStats
    acks: AckClock
    failover: FailoverPolicy
    commands: CommandChannel
    heartbeat: Callable[[], dict[str, Any]]

    def _connected(self, endpoint: Endpoint) -> None: ...

    async def _sender(self, link: BatchLink, tg: asyncio.TaskGroup) -> None: ...

    def _seal(self, body: dict[str, Any], kind: str) -> bytes: ...


async def run(uplink: Running, endpoint: Endpoint) -> None:
    s = uplink.settings
    tls = tls_context(s.ca_file) if endpoint.tls else None
    connection = HttpConnection(endpoint.host, endpoint.port, tls=tls, interface=endpoint.interface)
    try:
        await connection.open()
        uplink._connected(endpoint)
        link = HttpLink(connection, s, endpoint, uplink.acks, uplink.stats)
        async with asyncio.TaskGroup() as tg:
            tg.create_task(link.run())
            tg.create_task(heartbeats(uplink, link))
            tg.create_task(uplink._sender(link, tg))
            commands = uplink.commands
            if commands.policy.enabled:
                index = uplink.failover.index
                tg.create_task(commands.poll(link.fetch_commands, index, s.http_command_poll_s))
                tg.create_task(commands.worker())
            if endpoint.interface is not None:
                tg.create_task(session.watch_interface(endpoint.interface))
            if uplink.failover.on_backup:
                tg.create_task(session.probe_primary(uplink.failover))
    finally:
        connection.close()


async def heartbeats(uplink: Running, link: HttpLink) -> None:
    """A sealed heartbeat (``zip = "none"``, as on MQTT) every ``heartbeat_s``."""
    while True:
        try:
            link.heartbeat(uplink._seal(uplink.heartbeat(), "heartbeat"))
        except Exception:  # a snapshot: a missed one never ends the session
            uplink.stats.count_error("heartbeat")
            log.warning("heartbeat_skipped", exc_info=True)
        await asyncio.sleep(uplink.settings.heartbeat_s)
