"""The parts of one MQTT connection the uplink runs side by side
(uplink/mqtt.py ``Uplink._session``): the client as the contract wants it,
the retained online state, incoming messages until the transport says the
connection closed, the bound interface's state, and the primary's probes.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Callable

import aiomqtt
import structlog

from uplink import links, transport
from uplink.failover import Endpoint, FailoverPolicy
from uplink.settings import UplinkSettings
from uplink.transport import AckClock, LinkClosed

log = structlog.get_logger("uplink")

#: Seconds one PUBACK may take while other answers come (a broker that
#: answers nothing at all is left after ``ack_timeout_s``, uplink/transport.py).
PUBLISH_TIMEOUT_S = 60.0

#: Seconds allowed for the TCP + MQTT handshake over a slow 4G link.
CONNECT_TIMEOUT_S = 15.0

#: Seconds a clean stop waits to tell the platform it goes offline.
OFFLINE_NOTICE_S = 2.0

#: Seconds between two looks at the bound interface's state: reading one sysfs
#: file is cheap, and a pulled cable or a dead modem is then left within a
#: second instead of after keepalive (up to 1.5 x 60 s) or a publish timeout.
INTERFACE_CHECK_S = 1.0


class BackToPrimary(Exception):
    """The primary answered its probes: close the backup session cleanly."""


def make_client(s: UplinkSettings, endpoint: Endpoint) -> aiomqtt.Client:
    """Client id = device id, the retained last will, bound to the endpoint's
    interface when it names one."""
    will = aiomqtt.Will(s.topic("state"), json.dumps({"online": False}), qos=1, retain=True)
    client = aiomqtt.Client(
        endpoint.host,
        endpoint.port,
        identifier=s.device_id,
        clean_session=s.clean_session,
        keepalive=s.keepalive_s,
        will=will,
        username=s.username,
        password=s.password,
        tls_params=aiomqtt.TLSParameters() if endpoint.tls else None,
        timeout=CONNECT_TIMEOUT_S,
    )
    if endpoint.interface is not None:
        links.bind_client(client, endpoint.interface, CONNECT_TIMEOUT_S)
    return client


async def announce(client: aiomqtt.Client, s: UplinkSettings, acks: AckClock) -> None:
    """The retained online state, a QoS 1 request like any other."""
    online = {"online": True, "version": s.version, "ts": time.time_ns() // 1_000_000}
    await acks.answer(
        client.publish(s.topic("state"), json.dumps(online), qos=1, retain=True, timeout=math.inf),
        PUBLISH_TIMEOUT_S,
    )


async def offline_notice(client: aiomqtt.Client, s: UplinkSettings) -> None:
    """A clean stop sends DISCONNECT, which discards the last will: say
    "offline" ourselves, or the platform keeps seeing "online"."""
    try:
        async with asyncio.timeout(OFFLINE_NOTICE_S):
            offline = json.dumps({"online": False})
            await client.publish(s.topic("state"), offline, qos=1, retain=True)
    except Exception:  # stopping anyway; the retained will may say it later
        log.warning("offline_notice_failed", exc_info=True)


async def watch_incoming(
    client: aiomqtt.Client, deliver: Callable[[aiomqtt.Message], None]
) -> None:
    """Each incoming message to ``deliver``, until the transport reports the
    connection closed (aiomqtt's message stream ends then): LinkClosed."""
    try:
        async for message in client.messages:
            deliver(message)
    except aiomqtt.MqttError:
        pass
    await transport.closed(client)


async def watch_interface(interface: str) -> None:
    """A pulled cable or a dead modem is left at once: keepalive alone would
    notice only after up to 1.5 keepalive periods."""
    while not links.interface_down(interface):
        await asyncio.sleep(INTERFACE_CHECK_S)
    raise aiomqtt.MqttError(f"interface {interface} is down")


async def probe_primary(policy: FailoverPolicy) -> None:
    """On a backup: probe the primary (bound to its interface) until it has
    answered often enough, then end this session to go back."""
    primary = policy.primary
    while True:
        await asyncio.sleep(policy.probe_in(time.monotonic()))
        answered = await links.probe(primary.host, primary.port, primary.interface)
        log.info("primary_probed", endpoint=primary.name, answered=answered)
        if policy.probe_answered(time.monotonic(), answered):
            raise BackToPrimary()


def cause(
    group: BaseExceptionGroup[BaseException], *deliberate: type[BaseException]
) -> BaseException:
    """The one exception that says why a session ended, of those its tasks
    raised together: a deliberate end first, then a closed connection (the
    failed requests it caused are its consequences), else the first."""
    for kind in (BackToPrimary, *deliberate, LinkClosed):
        found = group.subgroup(lambda e, kind=kind: isinstance(e, kind))  # type: ignore[misc]
        if found is not None:
            return found.exceptions[0]
    return group.exceptions[0]
