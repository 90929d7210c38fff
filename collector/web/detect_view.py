"""The page's ``/detect`` view: detect a poll port's line, show it, apply its stanza.

Per configured port a "detect" button (behind the login, with the session's
CSRF token). A poll port's line is lent for the duration
(collector/station/lending.py: the port stops, PORT_OFFLINE says why, it reopens at
the end); a relay or listen port is refused with the reason. The detect
itself is ``forecourt detect DEVICE --json`` in a child (the daemon never
imports the families' census code; the child asks the control socket which
lines are held, and a lent one is not). The job runs in the background —
an active detect takes up to a minute, past the server's handler bound — and
the page shows it running, then the result as the CLI has it: family,
setting, pumps, confidence, evidence (hex and decoded) and the ``[[ports]]``
stanza.

"Apply" sends the stanza's line keys (protocol, setting, addresses; the old
protocol's option table removed) as a ``config.set`` patch of that port
through collector/remote/config_change.py: validated in a child, written with
``.prev`` kept, applied by a restart, and reverted by the box itself when
the platform does not acknowledge the new config within the confirm window.
"""

from __future__ import annotations

import asyncio
import html
import json
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import structlog

from collector.station.lending import LendRefused

if TYPE_CHECKING:
    from collector.parts import Station

log = structlog.get_logger("collector.web")

#: Longest a detect child may run: every setting heard, then a range probed.
DETECT_TIMEOUT_S = 240.0
Runner = Callable[[str], Awaitable[dict[str, Any]]]
#: Stanza keys a patch sets (number and device stay the configured ones).
LINE_KEYS = ("protocol", "baudrate", "bytesize", "parity", "stopbits", "addresses")


async def detect_in_child(device: str, socket: str) -> dict[str, Any]:
    """``forecourt detect DEVICE --json`` in a fresh interpreter: its one port's result."""
    from collector.remote.config_check import run_child

    argv = [sys.executable, "-m", "collector", "detect", device, "--json", "--socket", socket]
    status, out, err = await run_child(argv, b"", DETECT_TIMEOUT_S)
    if status is None:
        return {"device": device, "status": "failed", "note": "detect ran too long"}
    try:
        (result,) = json.loads(out)["ports"]
    except (ValueError, KeyError, TypeError):
        tail = err.decode("utf-8", "replace").strip().splitlines()[-1:] or ["no output"]
        return {"device": device, "status": "failed", "note": f"exit {status}: {tail[0]}"}
    assert isinstance(result, dict)
    return result


@dataclass
class Job:
    port: int
    started: float = field(default_factory=time.monotonic)
    result: dict[str, Any] | None = None
    applied: str = ""


class DetectView:
    """The jobs (one per port, the last kept) and their rendering."""

    def __init__(self, collector: Station, runner: Runner | None = None) -> None:
        self.collector = collector
        socket = collector.config.control.socket
        self.runner: Runner = runner or (lambda device: detect_in_child(device, socket))
        self.jobs: dict[int, Job] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def running(self) -> bool:
        return any(job.result is None for job in self.jobs.values())

    def start(self, number: int) -> str:
        """Start a detect of port ``number``; '' or why not."""
        pc = next((p for p in self.collector.config.ports if p.number == number), None)
        if pc is None:
            return f"no port {number}"
        if self.running():
            return "a detect is running; try after it"
        if pc.mode != "poll":
            return (
                f"port {number} is a {pc.mode} port: the station's controller is the master "
                "on its line; run `forecourt detect --passive` on a tap of it"
            )
        job = self.jobs[number] = Job(number)
        task = asyncio.get_running_loop().create_task(self._run(job, pc.device, pc.mode))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return ""

    async def _run(self, job: Job, device: str, mode: str) -> None:
        port = next((p for p in self.collector.ports if p.number == job.port), None)
        try:
            if port is None:  # not built (a collector not started): nothing holds it
                job.result = await self.runner(device)
                return
            async with self.collector.lending.lend(port, mode) as lent:
                job.result = await self.runner(lent)
        except LendRefused as exc:
            job.result = {"device": device, "status": "refused", "note": str(exc)}
        except Exception as exc:  # never a reason to stop the page or the ports
            log.exception("web_detect_failed", port=job.port)
            job.result = {"device": device, "status": "failed", "note": repr(exc)}

    def patch(self, number: int) -> dict[str, Any] | str:
        """The ``config.set`` patch applying port ``number``'s last stanza, or why not."""
        job = self.jobs.get(number)
        stanza = job.result.get("stanza") if job is not None and job.result else None
        if not isinstance(stanza, dict):
            return f"port {number}: no detected stanza to apply"
        ports = self.collector.config.ports
        index = next((i for i, p in enumerate(ports) if p.number == number), None)
        if index is None:
            return f"no port {number}"
        item: dict[str, Any] = {k: stanza[k] for k in LINE_KEYS}
        item["mode"] = stanza.get("mode")  # none: poll (the default)
        old = ports[index].protocol
        if old != stanza["protocol"]:
            item[old] = None  # the old protocol's option table, if any
        return {"ports": {str(index): item}}

    async def apply(self, number: int) -> str:
        """Port ``number``'s stanza through config.set; what happened, for the page."""
        from collector.remote.config_rules import CONFIRM_DEFAULT_S
        from uplink.commands import CommandError, current_command_id

        changes = self.collector.config_changes
        if changes is None:
            return "config changes are not available (no config file or no uplink)"
        patch = self.patch(number)
        if isinstance(patch, str):
            return patch
        token = current_command_id.set(f"web-detect-p{number}-{time.time_ns() // 1_000_000}")
        try:
            reply = await changes.config_set(
                {"patch": patch, "confirm_within_s": CONFIRM_DEFAULT_S}
            )
        except CommandError as exc:
            return f"not applied: {exc}"
        finally:
            current_command_id.reset(token)
        job = self.jobs[number]
        if not reply.get("changed"):
            job.applied = "already the config: nothing changed"
        else:
            job.applied = (
                f"applied ({reply['apply']}): {', '.join(reply['changed'])}; the previous file "
                f"is kept as .prev and put back unless the platform confirms the new config "
                f"within {reply['confirm_within_s']} s"
            )
        log.info("web_detect_applied", port=number, changed=reply.get("changed"))
        return ""

    # -- the page --------------------------------------------------------------

    def render(self, csrf: str, message: str = "") -> str:
        token = html.escape(csrf)
        rows = []
        for pc in self.collector.config.ports:
            job = self.jobs.get(pc.number)
            state = "" if job is None else self._job_html(job, token)
            button = (
                f'<form method="post" action="/detect" class="detect">'
                f'<input type="hidden" name="csrf" value="{token}">'
                f'<input type="hidden" name="port" value="{pc.number}">'
                f'<button type="submit" id="detect-{pc.number}">检测 Detect</button></form>'
                if pc.mode == "poll"
                else f"<small>{html.escape(pc.mode)}: detect on a tap (--passive)</small>"
            )
            rows.append(
                f'<section class="port" id="port-{pc.number}"><h3>port {pc.number} '
                f"{html.escape(pc.device)} — {html.escape(pc.protocol)} ({html.escape(pc.mode)})"
                f"</h3>{button}{state}</section>"
            )
        note = (
            "<p>A poll port stops collecting while its line is detected (PORT_OFFLINE, "
            "up to a minute), then starts again.</p>"
        )
        msg = f'<p class="err" id="message">{html.escape(message)}</p>' if message else ""
        return f'{msg}{note}<div id="detect">{"".join(rows)}</div>'

    def _job_html(self, job: Job, token: str) -> str:
        if job.result is None:
            took = time.monotonic() - job.started
            return f'<p class="running" id="running-{job.port}">检测中 detecting… {took:.0f} s</p>'
        r = job.result
        head = html.escape(f"{r.get('status')}")
        if r.get("status") == "found":
            line = (r.get("line") or {}).get("text", "-")
            head += html.escape(
                f" — {r.get('family')} ({r.get('title')}), {line}, pumps "
                f"{', '.join(map(str, r.get('addresses') or [])) or '-'}, "
                f"confidence {float(r.get('confidence') or 0):.2f}"
            )
        head += html.escape(
            f" ({r.get('how') or '-'}, {float(r.get('seconds') or 0):.1f} s, "
            f"{r.get('bytes_written', 0)} bytes written)"
        )
        parts = [f'<p id="result-{job.port}">{head}</p>']
        if r.get("note"):
            parts.append(f"<p>{html.escape(str(r['note']))}</p>")
        evidence = "\n".join(
            f"{e.get('hex')}\n    {json.dumps(e.get('decoded'), ensure_ascii=False, default=str)}"
            for e in r.get("evidence") or []
        )
        if evidence:
            parts.append(f"<pre>{html.escape(evidence)}</pre>")
        stanza = r.get("stanza")
        if isinstance(stanza, dict):
            from collector.detect.result import stanza_toml

            parts.append(f'<pre id="stanza-{job.port}">{html.escape(stanza_toml(stanza))}</pre>')
            parts.append(
                f'<form method="post" action="/detect/apply">'
                f'<input type="hidden" name="csrf" value="{token}">'
                f'<input type="hidden" name="port" value="{job.port}">'
                f'<button type="submit" id="apply-{job.port}">应用 Apply (config.set, '
                "reverted unless confirmed)</button></form>"
            )
        if job.applied:
            parts.append(f'<p class="ok" id="applied-{job.port}">{html.escape(job.applied)}</p>')
        return "".join(parts)
