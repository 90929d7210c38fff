"""What the daemon hands its parts, instead of itself.

collector/daemon.py builds every part and gives each the narrow thing it
needs: the store, the uplink, a restart request — or, for the parts that
read or change the running station as a whole, one of the views below. The
``Collector`` satisfies them by its attributes; no part imports the daemon,
so the daemon imports its parts and nothing imports back
(tests/test_layers.py).

- :class:`Station`: what the local tools read (the control socket,
  collector/tools/control.py, and the web page, collector/web/app.py).
- :class:`LiveParts`: what a confirmed ``config.set`` changes in place
  (collector/remote/config_change.py).
- :class:`StartError`: how a part stops the start (keys, store, commands, OTA).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from buffer.store import OrderStore
    from collector.device.clock import ClockSync
    from collector.station.evidence import EvidenceRecorder
    from collector.station.gauge import GaugeTask
    from collector.station.gpio_inputs import PulseInputs
    from collector.station.lending import Lending
    from collector.station.listen import ListenPort
    from collector.station.nozzles import NozzleTable
    from collector.station.port import PollPort
    from collector.station.relay import RelayPort
    from collector.station.seals import SealTask
    from config.models import Config
    from uplink.mqtt import Uplink

    Port = PollPort | RelayPort | ListenPort


class StartError(Exception):
    """Start-up cannot continue; ``str()`` is the one line a technician reads."""


class ChangeWatch(Protocol):
    """The config-change part as a local tool sees it (collector/remote/config_change.py
    ``ConfigChanges``): its file lock and its failure counters."""

    @property
    def file_lock(self) -> asyncio.Lock: ...

    @property
    def errors(self) -> dict[str, int]: ...

    async def config_set(self, args: dict[str, Any]) -> dict[str, Any]: ...


class Station(Protocol):
    """The running station, read by the control socket and the web page.
    Read-only but for :attr:`errors`, where a failed query is counted."""

    @property
    def config(self) -> Config: ...

    @property
    def started(self) -> float: ...

    @property
    def ports(self) -> Sequence[Port]: ...

    @property
    def nozzles(self) -> NozzleTable | None: ...

    @property
    def store(self) -> OrderStore | None: ...

    @property
    def uplink(self) -> Uplink | None: ...

    @property
    def gauge(self) -> GaugeTask | None: ...

    @property
    def seals(self) -> SealTask | None: ...

    @property
    def pulses(self) -> PulseInputs | None: ...

    @property
    def clock(self) -> ClockSync: ...

    @property
    def errors(self) -> dict[str, int]: ...

    @property
    def config_changes(self) -> ChangeWatch | None: ...

    @property
    def lending(self) -> Lending: ...

    @property
    def evidence(self) -> EvidenceRecorder | None: ...


class LiveParts(Protocol):
    """What a confirmed ``config.set`` switches without a restart (the config
    the parts read, the heartbeat, the edge checks, the clock's thresholds),
    and the restart it asks for when it cannot."""

    config: Config

    @property
    def store(self) -> OrderStore | None: ...

    @property
    def uplink(self) -> Uplink | None: ...

    @property
    def ports(self) -> Sequence[Port]: ...

    @property
    def clock(self) -> ClockSync: ...

    def request_restart(self) -> None: ...
