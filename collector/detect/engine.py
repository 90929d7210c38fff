"""Detect one line, or many at once: listen first, then probe a silent line.

Each line is its own task (a 32-port box detects every line at once: the
waits are the line's, the CPU is a census per window). Times:

- the first window is :data:`SILENCE_S` long (at the most common setting):
  no byte in it and the line is *silent* — nothing polls it, so probing
  disturbs no master (SPEC D20). A master polling slower than that is
  taken for none: ``--passive`` never writes;
- every other setting is heard for ``seconds`` (``--seconds``), up to
  :data:`EXTEND_WINDOWS` times longer while some family framed good frames
  but not yet enough (a master polling slowly);
- every setting is heard, none is taken early: at a wrong setting the
  UART drops the bytes with framing or parity errors (INPCK, IGNPAR) and
  a family with a weak check still explains much of what is left (Gilbarco
  reads a Censtar 8E1 line heard at 8N1 clean). The setting taken is the
  one whose best reading explains the most bytes per second (its coverage
  × the bytes heard): a wrong setting delivers half the bytes or fewer;
  within it, the best reading (collector/detect/judge.py);
- a probe waits the family's ``inter_frame_gap_ms`` before its request and
  its ``reply_within_ms`` (else :data:`DEFAULT_REPLY_MS`) for the first
  byte back, then :data:`QUIET_MS` of quiet after the last.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import protocols
from collector.detect import judge, plan
from collector.detect.line import Line, LineGone
from collector.detect.result import PortResult, Tried, line_dict, stanza
from protocols.descriptor import ProtocolDescriptor

#: The first window, seconds: a line without a byte in it is silent. Three
#: times the collector's own idle poll interval (1 s) and many POS cycles.
SILENCE_S = 3.0
#: The window at each other setting, seconds (``--seconds``).
LISTEN_S = 1.5
#: A window where a family framed some good frames but too few is extended
#: this many times (a master polling every second or so).
EXTEND_WINDOWS = 2
#: A pump's answer starts within this, ms, unless its descriptor says
#: otherwise (``reply_within_ms``). Unverified for most families (no
#: source gives a turnaround): ``--reply-ms`` lengthens it. An answer that
#: comes later still counts: it arrives during the next probe and names
#: its pump (``_Asked.late``).
DEFAULT_REPLY_MS = 40
#: Quiet after the last byte of an answer, ms: its end.
QUIET_MS = 30


async def detect(
    device: str,
    *,
    seconds: float = LISTEN_S,
    passive: bool = False,
    reply_ms: int | None = None,
    families: Sequence[ProtocolDescriptor] | None = None,
) -> PortResult:
    """What is on ``device`` (collector/detect/__init__.py)."""
    started = time.monotonic()
    known = list(protocols.descriptors()) if families is None else list(families)
    result = PortResult(device=device)
    try:
        heard = await _listen(device, seconds, known, result)
        if heard is not None:
            _conclude_listening(result, heard)
        elif passive:
            result.note = (
                f"silent for {SILENCE_S:g} s and --passive: nothing to hear, nothing asked"
            )
        else:
            await _probe(device, known, result, reply_ms)
    except OSError as exc:  # LineGone, or the line failed while read
        result.status = "failed"
        result.note = f"{device}: {exc.strerror or exc}"
        result.tried = [t for t in result.tried if t.bytes or t.probes or t.refused]
    result.seconds = round(time.monotonic() - started, 1)
    return result


async def detect_all(
    devices: Sequence[str],
    *,
    seconds: float = LISTEN_S,
    passive: bool = False,
    reply_ms: int | None = None,
) -> list[PortResult]:
    """Every device at once, each in its own task; results in the order given."""
    return list(
        await asyncio.gather(
            *(detect(d, seconds=seconds, passive=passive, reply_ms=reply_ms) for d in devices)
        )
    )


# -- listening -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Window:
    """What one setting's window said: the bytes, for how long, every family's reading."""

    line: plan.LineClass
    data: bytes
    seconds: float
    readings: list[judge.Reading]

    def rank(self) -> tuple[int, int, float]:
        """Counting and clean first, then the bytes per second its best explains."""
        if not self.readings:
            return (0, 0, 0.0)
        best = self.readings[0]
        explained = best.coverage * len(self.data) / max(self.seconds, 1e-3)
        return (int(best.counts), int(best.clean), explained)


Heard = list[Window]


async def _listen(
    device: str, seconds: float, families: list[ProtocolDescriptor], result: PortResult
) -> Heard | None:
    """Hear the line at each setting; None when it was silent in the first window."""
    readings: Heard = []
    for index, line_class in enumerate(plan.line_classes(families)):
        tried = Tried(str(line_class.setting), "listen")
        result.tried.append(tried)
        try:
            line = Line(device, line_class.setting, writable=False)
        except LineGone:
            raise
        except OSError as exc:
            tried.refused = str(exc)
            continue
        # Only the families seen at this setting judge its bytes.
        serving = [f for f in families if line_class.serves(f)]
        began = time.monotonic()
        try:
            data = await _hear(line, SILENCE_S if index == 0 else seconds, serving)
        finally:
            line.close()
        heard_s = time.monotonic() - began
        if index == 0 and not data:
            result.tried.clear()  # silence is said once, not per setting
            return None
        window = judge.read_window(data, serving)
        tried.bytes = len(data)
        tried.families = _counts(window)
        readings.append(Window(line_class, data, heard_s, window))
    result.how = "listen"
    return readings


async def _hear(line: Line, seconds: float, families: list[ProtocolDescriptor]) -> bytes:
    """One window, extended while it is promising but not yet conclusive."""
    data = await line.listen(seconds)
    for _ in range(EXTEND_WINDOWS):
        window = judge.read_window(data, families) if data else []
        promising = any(r.census.good_frames > 0 and r.clean and not r.counts for r in window)
        if not promising or any(r.counts for r in window):
            break
        data += await line.listen(seconds)
    return data


def _counts(window: list[judge.Reading]) -> dict[str, dict[str, int]]:
    return {
        r.family.name: {
            "good": r.census.good_frames,
            "bad": r.census.bad_frames,
            "master": r.census.master_frames,
            "pump": r.census.pump_frames,
        }
        for r in window
        if r.census.good_frames or r.census.bad_frames
    }


def _conclude_listening(result: PortResult, readings: Heard) -> None:
    ranked = [w for w in readings if w.readings and w.readings[0].counts]
    if not ranked:
        result.note = (
            "bytes on the line, but no family framed several good frames at any setting: "
            "another protocol, a noisy line, or a setting not in the brand table"
        )
        return
    taken = max(ranked, key=Window.rank)
    line_class, data, window = taken.line, taken.data, taken.readings
    best = window[0]
    family = best.family
    setting = line_class.own_setting(family)
    c = best.census
    result.status = "found"
    result.family, result.title = family.name, family.title
    result.line = line_dict(setting)
    result.confidence = judge.confidence(best, window[1:])
    result.master_frames, result.pump_frames = c.master_frames, c.pump_frames
    # Pumps only answer: bytes on the line mean a master is asking (a tap on
    # the pumps' pair of an RS-422 line hears only the answers).
    result.master_polling = True
    result.evidence = judge.evidence(family, data)
    addresses = sorted(best.in_range)
    low, high = family.address_range
    if not addresses and low == high:
        addresses = [low]  # one pump per line, no address on the wire
    result.addresses = addresses
    rivals = [r.family.name for r in window[1:] if r.rivals(best)]
    notes = (
        [f"also framed by {', '.join(rivals)} (fewer frames or no sides told)"] if rivals else []
    )
    if not addresses:
        notes.append("no pump address seen: listen longer (--seconds) or probe a silent line")
    elif family.bus_monitor:
        result.stanza = stanza(result.device, 1, family.name, setting, addresses, "listen")
        notes.append("another master polls this line: the collector listens (mode listen)")
    else:
        notes.append(
            f"another master polls this line and a {family.name} line cannot be read by a tap: "
            "wire the collector between the POS and the pumps (mode relay, pos_device)"
        )
    result.note = "; ".join(notes)


# -- probing -------------------------------------------------------------------


@dataclass
class _Asked:
    """One family at one line class: who answered, and whether its framing broke."""

    line: plan.LineClass
    family: ProtocolDescriptor
    valid: list[int] = field(default_factory=list)
    exchanges: bytearray = field(default_factory=bytearray)
    conflict: bool = False
    probes: int = 0

    def rank(self) -> tuple[int, int]:
        return (int(not self.conflict), len(self.valid))


async def _probe(
    device: str, families: list[ProtocolDescriptor], result: PortResult, reply_ms: int | None
) -> None:
    """Probe the silent line (module doc). A family whose answers carry a frame
    check is taken at the first line class where pumps answer it (the rest of
    its range there asked first); one whose status query and answer are
    single bytes (a pump reads garbage as its commands, and a wrong setting's
    garbage may look like an answer) is asked at every one of its classes and
    the best one taken (no framing conflict first, then the most pumps)."""
    result.how = "probe"
    steps = plan.probe_steps(families)
    asked: dict[tuple[str, str], _Asked] = {}
    for index, step in enumerate(steps):
        family, line_class = step.family, step.line
        key = (family.name, str(line_class.setting))
        state = asked.setdefault(key, _Asked(line_class, family))
        if state.conflict:
            continue  # its framing broke here: not asked again at this setting
        later = [s for s in steps[index + 1 :] if s.family.name == family.name]
        await _ask(device, step, state, result, reply_ms)
        if state.valid and not state.conflict:
            # Pumps answered: ask the rest of the range at this setting now.
            for rest in (s for s in later if s.line == line_class):
                await _ask(device, rest, state, result, reply_ms)
        mine = [a for a in asked.values() if a.family.name == family.name and a.valid]
        if not mine:
            continue
        if plan.single_byte(family) and any(s.line != line_class for s in later):
            continue  # weak evidence: compare with its other settings first
        _found(result, max(mine, key=lambda a: a.rank()))
        return
    result.note = "silent: no pump answered any family's status query at any setting"


async def _ask(
    device: str, step: plan.Step, state: _Asked, result: PortResult, reply_ms: int | None
) -> None:
    """Open the line at the step's setting and probe its addresses into ``state``."""
    tried = _tried(result, str(step.line.setting))
    if tried.refused:
        return
    try:
        line = Line(device, step.line.setting, writable=True)
    except LineGone:
        raise
    except OSError as exc:
        tried.refused = str(exc)
        return
    try:
        await _probe_family(line, step, state, tried, reply_ms)
    finally:
        result.bytes_written += line.written
        line.close()


def _tried(result: PortResult, line: str) -> Tried:
    found = next((t for t in result.tried if t.line == line and t.how == "probe"), None)
    if found is None:
        found = Tried(line, "probe")
        result.tried.append(found)
    return found


async def _probe_family(
    line: Line, step: plan.Step, asked: _Asked, tried: Tried, reply_ms: int | None
) -> None:
    """Ask the step's addresses, until the family's framing conflicts."""
    family = step.family
    gap_s = family.inter_frame_gap_ms / 1000
    within_ms = reply_ms or family.reply_within_ms or DEFAULT_REPLY_MS
    char_s = 11 / line.setting.baudrate
    quiet_s = max(QUIET_MS / 1000, 4 * char_s)
    counts = tried.families.setdefault(family.name, {"good": 0, "bad": 0, "answered": 0})
    for address in step.addresses:
        if address in asked.valid:
            continue  # credited already (a late answer)
        probe = plan.probe_for(family, address)
        # The request takes its own time to leave before the answer can start.
        reply_s = within_ms / 1000 + len(probe.request) * char_s
        raw, accepted = await line.exchange(probe, gap_s, reply_s, quiet_s)
        tried.probes += 1
        asked.probes += 1
        answer = judge.judge_answer(family, address, probe.request, raw, accepted)
        counts["good"] += answer.census.good_frames
        counts["bad"] += answer.census.bad_frames
        for late in sorted(answer.late):
            if late < address and late not in asked.valid:
                asked.valid.append(late)
                counts["answered"] += 1
                asked.exchanges += judge.strip_echo(raw, probe.request)
        if answer.valid:
            asked.valid.append(address)
            counts["answered"] += 1
            asked.exchanges += probe.request + judge.strip_echo(raw, probe.request)
        elif answer.conflict:
            asked.conflict = True
            return  # not this family's framing here: stop asking it


def _found(result: PortResult, asked: _Asked) -> None:
    family, line_class = asked.family, asked.line
    setting = line_class.own_setting(family)
    result.status = "found"
    result.family, result.title = family.name, family.title
    result.line = line_dict(setting)
    result.addresses = sorted(asked.valid)
    result.confidence = round(len(asked.valid) / (len(asked.valid) + int(asked.conflict)), 2)
    result.evidence = judge.evidence(family, bytes(asked.exchanges))
    result.stanza = stanza(result.device, 1, family.name, setting, result.addresses, "poll")
    result.note = f"{len(asked.valid)} of {asked.probes} {family.name} status queries answered" + (
        "; then the family's framing broke" if asked.conflict else ""
    )
