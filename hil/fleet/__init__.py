"""A fleet of simulated collectors against one broker and a platform receiver.

    python -m hil.fleet --collectors 200 --seconds 60 --rate 1

What runs (one machine, real processes, real sockets, real files):

* one mosquitto (hil/stack.py ``Mosquitto``);
* ``--receivers`` platform receiver processes (:mod:`hil.fleet.receiver`),
  sharing one MQTT shared subscription (``$share/fleet/forecourt/v1/+/up/#``)
  when there is more than one: each opens every envelope with the sending
  device's own key, verifies each record's ``h`` and writes one line per
  record;
* ``--workers`` collector processes (:mod:`hil.fleet.worker`), each running
  its share of the N collectors as asyncio tasks: per collector its own
  device id, kid and key, its own SQLite store and the real
  :class:`uplink.mqtt.Uplink` — store first: synthetic orders are committed
  to the store (one commit per order, as a port does) and the uplink drains
  them from there;
* :mod:`hil.fleet.check` afterwards joins what was committed with what
  arrived: exactly once, duplicates, per-nozzle chains, envelope replays and
  commit → opened latency — the platform's stream stage, keyed by device.

Why tasks and not 200 daemons: a full ``forecourt run`` per station needs
its dispenser simulators on ptys; 200 of them on 2 cores would measure the
simulators and the pty wake-ups, not the uplink. docs/scaling.md says what
the figures mean for a province.
"""
