"""What the uplink says about itself: the heartbeat's ``link`` and the full
status of ``forecourt uplink`` / the web page — publishing and the command
channel separately, the endpoint in use, and the last error with its time,
marked old once the part it concerns works again."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from uplink.command_channel import CommandChannel
    from uplink.failover import FailoverPolicy
    from uplink.settings import UplinkStats
    from uplink.transport import AckClock


def link(policy: FailoverPolicy, stats: UplinkStats, channel: CommandChannel) -> dict[str, Any]:
    """The heartbeat's ``link``: the endpoint in use (or being tried), the
    last PUBACK, the command channel, and the last error while it is current."""
    endpoint = policy.target
    out: dict[str, Any] = {
        "name": endpoint.name,
        "endpoint": endpoint.address,
        "transport": endpoint.scheme,
        "interface": endpoint.interface,
        "primary": policy.index == 0,
        "connected": stats.connected,
        "last_puback_ms": stats.last_puback_ms,
        "commands": commands(channel, brief=True),
    }
    error = stats.error_status()
    if error is not None and not error["old"]:
        out["last_error"] = {"text": error["text"], "at_ms": error["at_ms"]}
    return out


def full(s: UplinkStats, acks: AckClock, channel: CommandChannel) -> dict[str, Any]:
    """Publishing and the command channel, separately, and the last error."""
    return {
        "publishing": {
            "connected": s.connected,
            "since_ms": s.connected_since_ms,
            "last_puback_ms": s.last_puback_ms,
            "awaiting_ack": acks.outstanding,
        },
        "commands": commands(channel, brief=False),
        "last_error": s.error_status(),
    }


def commands(channel: CommandChannel, *, brief: bool) -> dict[str, Any]:
    """``state`` (off, waiting, subscribing, subscribed, refused), ``since_ms``
    (since when it is subscribed, or not), ``reason`` while it is not."""
    policy = channel.policy
    out: dict[str, Any] = {"state": policy.state, "since_ms": policy.since_ms}
    if policy.reason is not None:
        out["reason"] = policy.reason
    if not brief:
        out["endpoint"] = None if policy.endpoint is None else policy.names[policy.endpoint]
        out["refusals"] = {policy.names[i]: n for i, n in policy.refusals.items() if n}
        out["refused_by"] = [policy.names[i] for i in sorted(policy.refused_round)]
        out["dropped"] = channel.dropped
    return out
