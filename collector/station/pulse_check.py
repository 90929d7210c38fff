"""A nozzle's own signals against the dispenser's account of each sale, pure.

Beside the dispenser's data link the gateway can read two signals of its
own per nozzle on GPIO lines (collector/station/gpio_inputs.py reads them): the
meter's **encoder pulses** (each one ``litres_per_pulse`` of fuel) and the
**nozzle switch** (lifted / hung in its holder). This module holds what
they say about each sale; times and counts come in, findings come out —
no I/O, no clock.

Episodes. With a nozzle switch, each lift … hang is one episode, and the
pulses counted between them are its fuel. A sale is matched to the oldest
episode not yet matched (one with pulses first, when the sale has volume):
sales on one nozzle are reported in the order they were made. An episode
nobody's sale matched within ``sale_wait_s`` of its hang is dropped — and
is ``LIFT_WITHOUT_SALE`` when its pulses are fuel (≥ ``unreported_min_l``).
Without a switch, a sale's fuel is the pulses since the previous sale, and
pulses that stop with no sale for ``sale_wait_s`` are ``PULSES_WITHOUT_SALE``.

Findings on a sale (flags of the order, then alarms: collector/station/sink.py):

- ``PULSE_MISMATCH`` — | pulses × litres_per_pulse − volume | > volume ×
  ``tolerance_pct`` / 100.
- ``SALE_TIME_MISMATCH`` — the episode's hang differs from the sale's
  ``ended_at``, or its lift from ``started_at`` (where known), by more
  than ``time_tolerance_s``.
- ``SALE_WITHOUT_LIFT`` — a switch is wired, has been read for at least
  ``sale_wait_s``, and no episode is there for the sale.

What is not judged (counted in :attr:`NozzleSignals.unjudged`, never a flag):
a sale while the input is offline; a sale without a switch that is the
first since the input came online (its pulses may have begun before);
the pulses and lift time of an episode already under way when the input
came online; ``SALE_WITHOUT_LIFT`` in the first ``sale_wait_s`` after the
input came online (a sale the pump held while the collector was down).

Lost edges: the kernel numbers every edge it sees per line (uAPI v2
``line_seqno``), also those its event buffer dropped, so the count follows
the numbers and a gap adds the edges it skipped (:meth:`NozzleSignals.pulse`
takes the count and the gap); ``lost`` in a finding says how many of its
pulses were only numbered, never read.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Protocol

from collector.station.edge import Finding

#: Completed episodes kept per nozzle waiting for their sale. A nozzle makes
#: one sale at a time; 16 is a quarter hour of back-to-back short fills
#: behind a stalled bus. An episode pushed out unmatched is judged like one
#: that waited too long.
EPISODES_MAX = 16

#: Sales whose findings are kept (per nozzle) so a sale asked about again
#: (the store refused it, the pump offered it twice) gets the same answer.
JUDGED_MAX = 32

PULSE_MISMATCH = "PULSE_MISMATCH"
SALE_TIME_MISMATCH = "SALE_TIME_MISMATCH"
SALE_WITHOUT_LIFT = "SALE_WITHOUT_LIFT"
LIFT_WITHOUT_SALE = "LIFT_WITHOUT_SALE"
PULSES_WITHOUT_SALE = "PULSES_WITHOUT_SALE"


class SecondSource(Protocol):
    """A signal independent of the dispenser's own account of a sale (here its
    encoder pulses and nozzle switch: collector/station/gpio_inputs.py). The port's
    sink asks it before the order is stored, so its findings are the order's
    flags, alarmed once the order is committed, like the edge checks'."""

    def findings(self, nozzle: str, order: Mapping[str, Any]) -> list[Finding]:
        """Findings for ``order`` of ``nozzle``; the same order asked again
        (a store that refused it, a pump that offers it twice) gets the same."""
        ...


@dataclass(frozen=True, slots=True)
class PulseSettings:
    """One nozzle's inputs and thresholds (``[[pulses]]``, config/models_inputs.py)."""

    nozzle: str
    litres_per_pulse: Decimal
    has_switch: bool
    tolerance_pct: Decimal = Decimal("0.6")
    time_tolerance_s: float = 60.0
    sale_wait_s: float = 120.0
    unreported_min_l: Decimal = Decimal("0.05")


@dataclass(slots=True)
class Episode:
    """One lift … hang. ``lifted_at`` is None when the nozzle was already out
    when the input came online: its pulses and lift time are then unknown."""

    lifted_at: datetime | None
    pulses: int = 0
    lost: int = 0
    hung_at: datetime | None = None
    hung_mono: float | None = None
    matched: bool = False


@dataclass(slots=True)
class NozzleSignals:
    """Pulses and the switch of one nozzle, and what they say about its sales."""

    settings: PulseSettings
    online_mono: float | None = None  # since when the input is read; None: offline
    pulses: int = 0  # counted since the collector started
    lost: int = 0
    lifted: bool | None = None
    current: Episode | None = None
    episodes: deque[Episode] = field(default_factory=deque)
    baseline: tuple[int, int] | None = None  # no switch: (pulses, lost) at the last sale
    last_pulse_mono: float | None = None
    #: Sales seen but not judged, by reason (``forecourt status``).
    unjudged: dict[str, int] = field(default_factory=dict)
    _judged: OrderedDict[tuple[Any, Any], list[Finding]] = field(default_factory=OrderedDict)

    # -- the input ------------------------------------------------------------

    def online(self, mono: float, lifted: bool | None) -> None:
        """The lines were requested again: nothing before this moment is known."""
        self.online_mono = mono
        self.lifted = lifted if self.settings.has_switch else None
        self.current = Episode(lifted_at=None) if self.lifted else None
        self.baseline = None

    def offline(self) -> None:
        """The lines are lost: an episode under way cannot be completed."""
        self.online_mono = None
        self.current = None
        self.baseline = None

    def pulse(self, count: int, lost: int, mono: float) -> None:
        """``count`` edges on the pulse line, ``lost`` of them only numbered."""
        self.pulses += count
        self.lost += lost
        self.last_pulse_mono = mono
        if self.current is not None:
            self.current.pulses += count
            self.current.lost += lost

    def switch(self, lifted: bool, mono: float, at: datetime) -> list[tuple[str, dict[str, Any]]]:
        """The nozzle switch changed (debounced by the kernel). Returns the
        alarms an episode pushed out of :data:`EPISODES_MAX` calls for."""
        if not self.settings.has_switch or lifted == self.lifted:
            return []
        self.lifted = lifted
        if lifted:
            self.current = Episode(lifted_at=at)
            return []
        episode, self.current = self.current, None
        if episode is None:
            return []
        episode.hung_at, episode.hung_mono = at, mono
        self.episodes.append(episode)
        out: list[tuple[str, dict[str, Any]]] = []
        while len(self.episodes) > EPISODES_MAX:
            out += self._drop(self.episodes.popleft())
        return out

    # -- a sale -----------------------------------------------------------------

    def findings(self, order: Mapping[str, Any], mono: float) -> list[Finding]:
        """The findings for one sale of this nozzle (an order's fields)."""
        key = (order.get("order_no"), order.get("ended_at"))
        if key in self._judged:
            return list(self._judged[key])
        result = self._judge(order, mono)
        if result is not None:
            self._judged[key] = result
            while len(self._judged) > JUDGED_MAX:
                self._judged.popitem(last=False)
        return list(result or [])

    def _judge(self, order: Mapping[str, Any], mono: float) -> list[Finding] | None:
        """None: not judged (and not remembered: asked again, it may be)."""
        if self.online_mono is None:
            return self._unjudged("offline")
        volume = _dec(order.get("volume"))
        if not self.settings.has_switch:
            now = (self.pulses, self.lost)
            before, self.baseline = self.baseline, now
            if before is None:
                return self._unjudged("first_sale")
            return self._pulse_check(volume, now[0] - before[0], now[1] - before[1])
        episode = self._match(volume)
        if episode is None:
            if mono - self.online_mono < self.settings.sale_wait_s:
                return self._unjudged("just_online")
            detail = {"volume": order.get("volume"), "ended_at": order.get("ended_at")}
            return [Finding(SALE_WITHOUT_LIFT, detail)]
        episode.matched = True
        if episode.lifted_at is None:
            self._unjudged("partial_episode")
            return self._time_check(episode, order)
        return self._pulse_check(volume, episode.pulses, episode.lost) + self._time_check(
            episode, order
        )

    def _match(self, volume: Decimal | None) -> Episode | None:
        waiting = [e for e in self.episodes if not e.matched]
        if self.current is not None and not self.current.matched:
            waiting.append(self.current)  # reported before its hang
        if volume is not None and volume > 0:
            with_fuel = [e for e in waiting if e.pulses > 0]
            if with_fuel:
                return with_fuel[0]
        return waiting[0] if waiting else None

    def _pulse_check(self, volume: Decimal | None, pulses: int, lost: int) -> list[Finding]:
        if volume is None:
            return []
        metered = pulses * self.settings.litres_per_pulse
        allowed = volume * self.settings.tolerance_pct / 100
        if abs(metered - volume) <= allowed:
            return []
        detail: dict[str, Any] = {
            "pulses": pulses,
            "pulse_volume": _s(metered),
            "volume": _s(volume),
            "tolerance_pct": _s(self.settings.tolerance_pct),
            "lost": lost,
        }
        if volume:
            detail["difference_pct"] = _s(((metered - volume) * 100 / volume).quantize(Q2))
        return [Finding(PULSE_MISMATCH, detail)]

    def _time_check(self, episode: Episode, order: Mapping[str, Any]) -> list[Finding]:
        limit = self.settings.time_tolerance_s
        ended, started = _time(order.get("ended_at")), _time(order.get("started_at"))
        off = []
        if episode.hung_at is not None and ended is not None:
            off.append(abs((episode.hung_at - ended).total_seconds()) > limit)
        if episode.lifted_at is not None and started is not None:
            off.append(abs((episode.lifted_at - started).total_seconds()) > limit)
        if not any(off):
            return []
        detail = {
            "lifted_at": _iso(episode.lifted_at),
            "hung_at": _iso(episode.hung_at),
            "started_at": order.get("started_at"),
            "ended_at": order.get("ended_at"),
            "tolerance_s": _seconds(limit),
        }
        return [Finding(SALE_TIME_MISMATCH, detail)]

    def _unjudged(self, reason: str) -> list[Finding] | None:
        """Not judged, counted by ``reason``: None, for :meth:`_judge` to return."""
        self.unjudged[reason] = self.unjudged.get(reason, 0) + 1
        return None

    # -- time passing -----------------------------------------------------------

    def due(self, mono: float) -> list[tuple[str, dict[str, Any]]]:
        """Alarms that time calls for now: episodes whose sale never came, or
        (no switch) pulses that stopped with no sale. Each is returned once."""
        out: list[tuple[str, dict[str, Any]]] = []
        wait = self.settings.sale_wait_s
        while self.episodes and (
            self.episodes[0].matched or (self.episodes[0].hung_mono or 0) + wait <= mono
        ):
            out += self._drop(self.episodes.popleft())
        if (
            not self.settings.has_switch
            and self.baseline is not None
            and self.last_pulse_mono is not None
            and self.last_pulse_mono + wait <= mono
        ):
            pulses, lost = self.pulses - self.baseline[0], self.lost - self.baseline[1]
            if pulses * self.settings.litres_per_pulse >= max(
                self.settings.unreported_min_l, self.settings.litres_per_pulse
            ):
                self.baseline = (self.pulses, self.lost)
                out.append((PULSES_WITHOUT_SALE, self._fuel(pulses, lost)))
        return out

    def _drop(self, episode: Episode) -> list[tuple[str, dict[str, Any]]]:
        fuel = episode.pulses * self.settings.litres_per_pulse
        if episode.matched or episode.pulses == 0 or fuel < self.settings.unreported_min_l:
            return []
        detail = self._fuel(episode.pulses, episode.lost)
        detail.update(lifted_at=_iso(episode.lifted_at), hung_at=_iso(episode.hung_at))
        return [(LIFT_WITHOUT_SALE, detail)]

    def _fuel(self, pulses: int, lost: int) -> dict[str, Any]:
        return {
            "pulses": pulses,
            "pulse_volume": _s(pulses * self.settings.litres_per_pulse),
            "lost": lost,
            "sale_wait_s": _seconds(self.settings.sale_wait_s),
        }

    def state(self) -> dict[str, Any]:
        """For ``forecourt status``."""
        return {
            "online": self.online_mono is not None,
            "lifted": self.lifted,
            "pulses": self.pulses,
            "lost": self.lost,
            "waiting_episodes": sum(1 for e in self.episodes if not e.matched),
            "unjudged": dict(self.unjudged),
        }


Q2 = Decimal("0.01")


def _dec(value: Any) -> Decimal | None:
    try:
        return None if value is None else Decimal(str(value))
    except InvalidOperation:
        return None


def _s(value: Decimal) -> str:
    return format(value, "f")


def _seconds(value: float) -> str:
    """Seconds as a decimal string: a stored record holds no float."""
    return _s(Decimal(str(value)).normalize())


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat(timespec="milliseconds")
