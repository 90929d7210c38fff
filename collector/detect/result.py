"""What detect says about one line: as data (``--json``, the web page) and as text.

``status``: ``found`` (a family, its setting and pumps), ``unknown`` (what
was seen, and why it is not enough), ``refused`` (the running collector
owns the line) or ``failed`` (the line could not be opened at all).

The stanza is a ``[[ports]]`` table ``config check`` accepts: the device
as given, the family, its own line setting (written out, even where it is
the family's default, so the file says what the line is), the pumps found,
and the mode: ``poll`` when detect probed a silent line, ``listen`` when
another master polls it (the collector must never be a second master,
SPEC D20) and the family's monitor reads a shared line; none when only a
relay could read it (the collector between the POS and the pumps: the
technician wires it and names ``pos_device``).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from protocols.descriptor import LineSetting


@dataclass
class Tried:
    """One line setting tried: bytes read or probes sent, and what each family made of it."""

    line: str
    how: str  # "listen" or "probe"
    bytes: int = 0
    probes: int = 0
    #: Family → {"good": n, "bad": n, ...} for the families that framed anything.
    families: dict[str, dict[str, int]] = field(default_factory=dict)
    refused: str | None = None


@dataclass
class PortResult:
    device: str
    status: str = "unknown"
    how: str | None = None
    family: str | None = None
    title: str | None = None
    line: dict[str, Any] | None = None
    addresses: list[int] = field(default_factory=list)
    confidence: float = 0.0
    master_frames: int = 0
    pump_frames: int = 0
    master_polling: bool = False
    evidence: list[dict[str, Any]] = field(default_factory=list)
    tried: list[Tried] = field(default_factory=list)
    note: str = ""
    stanza: dict[str, Any] | None = None
    seconds: float = 0.0
    bytes_written: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def line_text(self) -> str:
        return "-" if self.line is None else str(self.line.get("text", "-"))


def line_dict(setting: LineSetting) -> dict[str, Any]:
    return {
        "baudrate": setting.baudrate,
        "bytesize": setting.bytesize,
        "parity": setting.parity,
        "stopbits": setting.stopbits,
        "text": str(setting),
    }


def stanza(
    device: str,
    number: int,
    family: str,
    setting: LineSetting,
    addresses: list[int],
    mode: str,
) -> dict[str, Any]:
    """One ``[[ports]]`` table, in the order a person writes it."""
    table: dict[str, Any] = {"number": number, "device": device, "protocol": family}
    if mode != "poll":
        table["mode"] = mode
    table.update(
        baudrate=setting.baudrate,
        bytesize=setting.bytesize,
        parity=setting.parity,
        stopbits=setting.stopbits,
        addresses=sorted(addresses),
    )
    return table


def stanza_toml(table: dict[str, Any]) -> str:
    """``table`` as the ``[[ports]]`` text of a config file."""
    from config.toml_write import dumps

    return dumps({"ports": [table]})


def render_text(results: list[PortResult]) -> str:
    """What a technician reads: one block per line."""
    out: list[str] = []
    for r in results:
        head = f"{r.device}: {r.status}"
        if r.status == "found":
            head += (
                f" — {r.family} ({r.title}), {r.line_text}, pumps "
                f"{', '.join(map(str, r.addresses)) or '-'}, confidence {r.confidence:.2f}"
                f" ({r.how}, {r.seconds:.1f} s, {r.bytes_written} bytes written)"
            )
        else:
            head += f" ({r.seconds:.1f} s, {r.bytes_written} bytes written)"
        out.append(head)
        if r.status == "found" and r.how == "listen":
            who = "a master is polling" if r.master_polling else "no master heard"
            out.append(
                f"  traffic: {who}; {r.master_frames} master frames, {r.pump_frames} pump frames"
            )
        if r.note:
            out.append(f"  note: {r.note}")
        for item in r.evidence:
            decoded = json.dumps(item["decoded"], ensure_ascii=False, default=str)
            out.append(f"  {item['hex']}")
            out.append(f"      {decoded}")
        if r.status != "found":
            for t in r.tried:
                if t.refused:
                    out.append(f"  {t.line} {t.how}: refused by the device: {t.refused}")
                    continue
                seen = ", ".join(
                    f"{name} {c['good']} good/{c['bad']} bad" for name, c in t.families.items()
                )
                amount = f"{t.bytes} bytes" if t.how == "listen" else f"{t.probes} probes"
                out.append(f"  {t.line} {t.how}: {amount}" + (f"; {seen}" if seen else ""))
        if r.stanza is not None:
            out.append("  stanza:")
            out.extend(f"    {line}" for line in stanza_toml(r.stanza).splitlines())
        out.append("")
    return "\n".join(out)
