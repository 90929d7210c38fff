"""``forecourt detect`` against the simulators, every family, on ptys that honour line settings.

Each family's simulator runs at a line setting drawn from that family's
own list, with pumps at drawn addresses (hil/dispenser/sim.py garbles what
a peer at another setting reads). Passive: a POS / station controller
polls it through a bus and detect listens on the bus's tap — it writes
nothing (counted at the tap by hil/bus.py), even though it was free to
probe. Active: the simulator alone, silent until asked — detect probes with
each family's read-only status query. Families on one setting (Furen,
Lanfeng and UDC only speak 9600 8N1) are told apart on their own lines; a
line of random bytes is unknown, with what was seen, in bounded time; the
stanzas detect writes pass ``config check`` and the collector runs them.

The draw's seed is printed in every assertion (``DETECT_SEED=…`` repeats it).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import random
import signal
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

import protocols
from collector.detect.engine import detect
from collector.detect.plan import FIRST_ADDRESSES, same_line
from collector.detect.result import PortResult
from collector.tools.techcli import ask
from hil import stack
from hil.stack import Proc
from protocols.descriptor import LineSetting, ProtocolDescriptor

DEMO = stack.ROOT / "config" / "demo.toml"
SEED = int(os.environ.get("DETECT_SEED") or random.randrange(2**32))
#: A noise line must be judged within this (it is never probed: it has traffic).
NOISE_BOUND_S = 30.0
#: Seconds per setting the passive test listens (``--seconds``).
LISTEN_S = 0.5
#: Sales each simulated pump makes in the active test: the collector reads them.
ORDERS = 1
#: Families on a current loop (the bus returns the master's bytes to it):
#: (simulator flags, POS flags) — Gilbarco's simulator plays the echo unless
#: told not to, Uninfo's master is told to expect it.
LOOPS: dict[str, tuple[list[str], list[str]]] = {
    "gilbarco": (["--no-echo"], []),
    "uninfo": ([], ["--option", "echo=true"]),
}


def draw(
    rng: random.Random, family: ProtocolDescriptor, first: int | None = None
) -> tuple[LineSetting, list[int]]:
    """A setting from the family's list and up to two pump addresses in its
    range (in its ``first`` addresses when given)."""
    low, high = family.address_range
    span = range(low, high + 1)[:first]
    return rng.choice(family.line_settings), sorted(rng.sample(span, min(2, len(span))))


def nozzles_of(family: ProtocolDescriptor) -> int:
    """Nozzles per simulated pump: what the family's driver expects by default
    (its options' ``nozzles``, when it has one: a detected stanza keeps the
    defaults), else one (every family's pumps take one)."""
    if family.options is None:
        return 1
    fields = {f.name: f for f in dataclasses.fields(family.load("options"))}
    default = fields["nozzles"].default if "nozzles" in fields else 1
    return default if isinstance(default, int) else 1


def line_args(setting: LineSetting) -> list[str]:
    return ["--baudrate", str(setting.baudrate), "--parity", setting.parity]


@pytest.fixture
def procs() -> Iterator[list[Proc]]:
    running: list[Proc] = []
    yield running
    for proc in running:
        proc.signal(signal.SIGTERM)  # all at once, then each waited for
    for proc in reversed(running):
        proc.stop()


def agrees(result: PortResult, setting: LineSetting) -> bool:
    """The setting detect names is the simulator's, or one a UART cannot tell from it."""
    if result.line is None:
        return False
    found = LineSetting(result.line["baudrate"], result.line["parity"], result.line["bytesize"])
    return same_line(found, setting)


def test_passive_every_family_while_its_master_polls_and_a_noise_line_is_unknown(
    tmp_path: Path, procs: list[Proc]
) -> None:
    rng = random.Random(f"{SEED}:passive")
    truth: dict[str, tuple[ProtocolDescriptor, LineSetting, list[int]]] = {}
    parts: list[tuple[str, list[str]]] = []
    for family in protocols.descriptors():
        setting, addresses = draw(rng, family)
        name, pumps = family.name, ",".join(map(str, addresses))
        pump, pos, tap = (tmp_path / f"{name}-{end}" for end in ("pump", "pos", "tap"))
        pump_extra, pos_extra = LOOPS.get(name, ([], []))
        parts += [
            ("dispenser", stack.dispenser_args(
                pump, orders=0, nozzles=1, protocol=name,
                extra=["--addresses", pumps, *line_args(setting), *pump_extra],
            )),
            ("pos", ["--protocol", name, "--link", str(pos), "--addresses", pumps,
                     "--poll-ms", "30", *line_args(setting), *pos_extra]),
            # A current loop returns the master's bytes to it.
            ("bus", stack.bus_args(pos, pump, tap, loop=name in LOOPS)),
        ]  # fmt: skip
        truth[str(tap)] = (family, setting, addresses)
    # Every pump, POS and bus in one process: 27 interpreters took longer to
    # start on a loaded box than detect takes.
    rig = stack.rig(tmp_path, parts, [Path(tap) for tap in truth])
    procs.append(rig)
    noise_master, noise_slave = os.openpty()
    stop_noise = threading.Event()
    threading.Thread(target=babble, args=(noise_master, stop_noise), daemon=True).start()
    noise = os.ttyname(noise_slave)

    async def every_line() -> list[PortResult]:
        # Not --passive: the lines are not silent, so detect must not write anyway.
        # The masters poll every 30 ms: half a second per setting holds many frames.
        lines = [*truth, noise]
        return list(await asyncio.gather(*(detect(d, seconds=LISTEN_S) for d in lines)))

    try:
        *results, heard = asyncio.run(every_line())
    finally:
        stop_noise.set()
        rig.stop()  # each bus says what was written into its tap
        written = {line["tap"]: line["tap_written"] for line in rig.snapshot() if "tap" in line}
        os.close(noise_master)
        os.close(noise_slave)
    for result in results:
        family, setting, addresses = truth[result.device]
        why = (SEED, family.name, str(setting), addresses, result.as_dict())
        assert written[result.device] == 0 and result.bytes_written == 0, why
        assert (result.status, result.how, result.family) == ("found", "listen", family.name), why
        assert agrees(result, setting) and result.addresses == addresses, why
        assert result.master_polling and result.pump_frames > 0, why
        assert result.evidence and all(e["hex"] for e in result.evidence), why
        if family.bus_monitor:
            assert result.stanza is not None and result.stanza["mode"] == "listen", why
        else:  # a tap cannot tell its replies apart: only a relay reads it
            assert result.stanza is None and "relay" in result.note, why
    nine_six = [r.family for r in results if r.line and r.line["text"] == "9600 8N1"]
    assert len(set(nine_six)) >= 3, (SEED, nine_six)  # furen, lanfeng, udc at least
    assert (heard.status, heard.bytes_written) == ("unknown", 0), heard.as_dict()
    assert heard.seconds <= NOISE_BOUND_S and heard.note, heard.as_dict()
    assert all(t.bytes > 0 for t in heard.tried if not t.refused), heard.as_dict()


def babble(master: int, stop: threading.Event) -> None:
    """Random bytes in bursts, as a line with nothing but noise carries."""
    rng = random.Random(f"{SEED}:noise")
    while not stop.wait(0.05):
        try:
            os.write(master, rng.randbytes(64))
        except OSError:
            return


def site_config(tmp_path: Path, devices: list[Path]) -> Path:
    """demo.toml with the simulators' links as ports (their protocol a guess:
    detect corrects it) and this test's own store, socket and broker port."""
    text = DEMO.read_text().split("[[ports]]")[0]
    text = text.replace('".demo/store.sqlite"', f'"{tmp_path / "store.sqlite"}"')
    text = text.replace("port = 1883", f"port = {stack.free_port()}")
    text += f'\n[control]\nsocket = "{tmp_path / "control.sock"}"\n'
    for number, device in enumerate(devices, start=1):
        text += (
            f'\n[[ports]]\nnumber = {number}\ndevice = "{device}"\nprotocol = "sinopec"\n'
            "addresses = [1]\npoll_interval_ms = 50\n"
        )
    config = tmp_path / "site.toml"
    config.write_text(text)
    return config


def forecourt(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "collector", *args],
        cwd=stack.ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def test_active_every_family_written_checked_and_polled_by_the_collector(
    tmp_path: Path, procs: list[Proc]
) -> None:
    rng = random.Random(f"{SEED}:active")
    truth: dict[str, tuple[ProtocolDescriptor, LineSetting, list[int]]] = {}
    # Recognised only while its controller polls: a family without a driver
    # (the passive test). Pumps among the first addresses asked: a range's
    # rest is asked the same way, only later (the order: tests/test_detect.py).
    pollable = [f for f in protocols.descriptors() if f.driver is not None]
    parts: list[tuple[str, list[str]]] = []
    for family in pollable:
        setting, addresses = draw(rng, family, FIRST_ADDRESSES)
        link = tmp_path / family.name
        parts.append(
            ("dispenser", stack.dispenser_args(
                link, orders=ORDERS, nozzles=nozzles_of(family), rate=2, protocol=family.name,
                extra=["--addresses", ",".join(map(str, addresses)), *line_args(setting)],
            ))
        )  # fmt: skip
        truth[str(link)] = (family, setting, addresses)
    procs.append(stack.rig(tmp_path, parts, [Path(d) for d in truth]))
    config = site_config(tmp_path, [Path(d) for d in truth])
    done = forecourt("detect", "--all", "--write", str(config), "--json")
    assert done.returncode == 0, (SEED, done.stdout, done.stderr)
    report = json.loads(done.stdout)
    assert report["written"] == str(config) and report["errors"] == []
    for result in report["ports"]:
        family, setting, addresses = truth[result["device"]]
        why = (SEED, family.name, str(setting), addresses, result)
        assert (result["status"], result["how"], result["family"]) == (
            "found",
            "probe",
            family.name,
        ), why
        line = result["line"]
        found = LineSetting(line["baudrate"], line["parity"], line["bytesize"])
        assert same_line(found, setting) and result["addresses"] == addresses, why
    ports = tomllib.loads(config.read_text())["ports"]
    assert {p["device"]: p["protocol"] for p in ports} == {d: t[0].name for d, t in truth.items()}
    collector = stack.collector(tmp_path, config, [])
    procs.append(collector)
    sock = str(tmp_path / "control.sock")

    def ports_now() -> list[dict[str, Any]]:
        try:
            rows = ask(sock, {"query": "ports"}, timeout=2.0).get("data") or []
        except Exception:
            return []
        return list(rows)

    def every_port_sold() -> bool:
        rows = ports_now()
        return len(rows) == len(truth) and all(r["online"] and r["sales"] >= ORDERS for r in rows)

    with ThreadPoolExecutor(max_workers=2) as side:  # beside the collector's own work
        checked = side.submit(forecourt, "config", "check", str(config))
        stack.wait_until(lambda: len(ports_now()) == len(truth), 60, "the collector answering")
        # The running collector holds these lines: detect refuses, writing nothing.
        held = side.submit(
            forecourt, "detect", next(iter(truth)), "--config", str(config), "--json"
        )
        stack.wait_until(every_port_sold, 90, f"every detected port polled to its sales ({SEED})")
        check, refusal = checked.result(), held.result()
    assert check.returncode == 0, check.stdout
    assert refusal.returncode == 1, refusal.stdout
    (refused,) = json.loads(refusal.stdout)["ports"]
    assert refused["status"] == "refused" and refused["bytes_written"] == 0
    assert "holds it" in refused["note"], refused


def test_detect_refuses_a_bad_seconds_and_no_port(tmp_path: Path) -> None:
    bad = forecourt("detect", "--seconds", "0", "/dev/null")
    assert bad.returncode == 2 and "--seconds: a number in [0.5, 60]" in bad.stderr
    none = forecourt("detect", "--config", str(tmp_path / "none.toml"))
    assert none.returncode == 2 and "name a PORT" in none.stderr
