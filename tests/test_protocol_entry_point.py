"""A third-party protocol through the ``forecourt.protocols`` entry point, for real.

A throwaway distribution ``forecourt-tally`` is installed into a directory
on the children's ``PYTHONPATH``: its package and a ``*.dist-info`` with
``entry_points.txt`` is an installed distribution as far as
importlib.metadata is concerned. Nothing in this repository names it. Then:
``forecourt config check`` validates its options table, ``forecourt
decode`` offers it, the dispenser simulator answers in it (its descriptor's
responder), and the real daemon polls it over a pty until every sale is in
the store.

"Tally" is a made-up read-only line protocol (ASCII, CR-terminated): the
master asks ``?NN``; a pump answers ``INN`` (idle) or, for the oldest sale it
holds, ``SNN,nozzle,txn,grade,price,volume,amount,totalizer`` (hundredths),
and forgets that sale once it has been read.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from datetime import UTC
from pathlib import Path

import pytest

import protocols
from collector.tools.storeview import StoreUnavailable, open_readonly
from collector.tools.storeview import orders as stored_orders
from hil import stack
from hil.stack import Proc

DEMO_CONFIG = stack.ROOT / "config" / "demo.toml"
SALES = 4

PACKAGE = '''
"""A third party's protocol: one descriptor, parts named as text."""

from protocols.descriptor import LineSetting, ProtocolDescriptor

DESCRIPTOR = ProtocolDescriptor(
    name="tally",
    title="Tally (a throwaway test protocol)",
    driver="forecourt_tally.driver:TallyPoller",
    describer="forecourt_tally.driver:describe",
    options="forecourt_tally.driver:TallyOptions",
    responder="forecourt_tally.sim:TallyResponder",
    line_settings=(LineSetting(4800, "N"),),
    inter_frame_gap_ms=7,
    address_range=(1, 9),
)
'''

DRIVER = """
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Annotated, ClassVar

from annotated_types import Interval

from protocols.events import ProtocolError, PumpLink, Sale


@dataclass(frozen=True, slots=True)
class TallyOptions:
    offline_after: Annotated[int, Interval(ge=1, le=100)] = 3


def hundredths(text):
    return Decimal(int(text)).scaleb(-2)


class TallyPoller:
    name: ClassVar[str] = "tally"
    ALLOWED_COMMANDS: ClassVar[frozenset[int]] = frozenset({ord("?")})

    def __init__(self, addresses, *, offline_after=3, clock=datetime.now):
        self._addresses = list(addresses)
        self._offline_after = offline_after
        self._clock = clock
        self._turn = 0
        self._waiting = None
        self._buffer = b""
        self._misses = dict.fromkeys(self._addresses, 0)
        self._online = set()
        self.counters = {"frames": 0, "bad_message": 0, "timeouts": 0}

    @property
    def awaiting_response(self):
        return self._waiting is not None

    def next_request(self):
        address = self._addresses[self._turn % len(self._addresses)]
        self._turn += 1
        wire = f"?{address:02d}\\r".encode()
        if wire[0] not in self.ALLOWED_COMMANDS:
            raise RuntimeError("not on the allow-list")
        self._waiting = address
        return wire

    def receive_data(self, data):
        self._buffer = (self._buffer + data)[-256:]
        events = []
        while b"\\r" in self._buffer and self._waiting is not None:
            line, _, self._buffer = self._buffer.partition(b"\\r")
            events += self._answer(self._waiting, line.decode("ascii", "replace"))
        return events

    def _answer(self, address, text):
        self._waiting = None
        events = []
        if address not in self._online:
            self._online.add(address)
            events.append(PumpLink(address, True))
        self._misses[address] = 0
        if text == f"I{address:02d}":
            self.counters["frames"] += 1
            return events
        parts = text[1:].split(",")
        if text[:1] != "S" or len(parts) != 8 or parts[0] != f"{address:02d}":
            self.counters["bad_message"] += 1
            return [*events, ProtocolError("bad_message", repr(text), address)]
        self.counters["frames"] += 1
        _, nozzle, txn, grade, price, volume, amount, total = parts
        sale = Sale(
            address=address, nozzle=int(nozzle), order_no=txn, ended_at=self._clock(),
            grade=grade, price=hundredths(price), volume=hundredths(volume),
            amount=hundredths(amount), totalizer_volume_end=hundredths(total),
            totalizer_amount_end=None, key=f"{address}:{txn}", raw=text.encode(),
        )
        return [*events, sale]

    def response_timeout(self):
        address, self._waiting, self._buffer = self._waiting, None, b""
        self.counters["timeouts"] += 1
        self._misses[address] += 1
        if self._misses[address] >= self._offline_after and address in self._online:
            self._online.discard(address)
            return [PumpLink(address, False)]
        return [ProtocolError("timeout", f"pump {address}", address)]

    def sale_committed(self, sale):
        pass  # the pump forgets a sale once read: nothing to confirm


def describe(data):
    return [{"ok": True, "offset": 0, "protocol": "tally", "text": data.decode("ascii")}]
"""

SIM = """
from hil.dispenser.responder import answering


class TallyResponder:
    protocol = "tally"
    AMOUNT_TOTALIZER = False

    def __init__(self, pumps):
        self._pumps = {pump.address: pump for pump in pumps}
        self._buffer = b""

    def receive_data(self, data, now):
        self._buffer = (self._buffer + data)[-64:]
        out = b""
        while b"\\r" in self._buffer:
            line, _, self._buffer = self._buffer.partition(b"\\r")
            if len(line) != 3 or line[:1] != b"?" or not line[1:].isdigit():
                continue
            pump = self._pumps.get(int(line[1:]))
            if pump is None or not answering(pump, now):
                continue
            if not pump.pending:
                out += f"I{pump.address:02d}\\r".encode()
                continue
            s = pump.pending[0]
            pump.take(s.txn_no)
            fields = (s.nozzle, s.txn_no, s.grade, s.price, s.volume, s.amount,
                      s.totalizer_volume_end)
            out += (f"S{s.address:02d}," + ",".join(map(str, fields)) + "\\r").encode()
        return out
"""

ENTRY_POINTS = """\
[forecourt.protocols]
tally = forecourt_tally:DESCRIPTOR
"""

METADATA = """\
Metadata-Version: 2.1
Name: forecourt-tally
Version: 0.1
"""

#: What the tally wire carries exactly (no amount totalizer, no sale time).
EXACT_FIELDS = (
    "nozzle", "order_no", "grade", "price", "volume", "amount",
    "totalizer_volume_start", "totalizer_volume_end",
)  # fmt: skip


def install(site: Path) -> None:
    """``forecourt-tally`` as pip would leave it in ``site``."""
    package = site / "forecourt_tally"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(textwrap.dedent(PACKAGE))
    (package / "driver.py").write_text(textwrap.dedent(DRIVER))
    (package / "sim.py").write_text(textwrap.dedent(SIM))
    info = site / "forecourt_tally-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(METADATA)
    (info / "entry_points.txt").write_text(ENTRY_POINTS)


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The distribution installed on the PYTHONPATH of every child started after."""
    site = tmp_path / "site"
    install(site)
    monkeypatch.setenv("PYTHONPATH", str(site))
    return site


@pytest.fixture
def procs() -> Iterator[list[Proc]]:
    started: list[Proc] = []
    yield started
    for proc in reversed(started):
        proc.stop()


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], cwd=stack.ROOT, capture_output=True, text=True, timeout=60
    )


def test_the_installed_protocol_is_checked_decoded_and_simulated(site: Path) -> None:
    listed = run("-c", "import protocols; print(' '.join(protocols.available()))")
    assert "tally" in listed.stdout.split(), listed.stderr
    # Its options table is validated against its own dataclass's bounds.
    check = run("-m", "collector", "config", "check", str(DEMO_CONFIG),
                "--set", "ports.0.protocol=tally", "--set", "ports.0.tally.offline_after=0",
                "--set", "ports.0.addresses=[1, 12]")  # fmt: skip
    assert check.returncode == 2
    assert check.stdout.splitlines() == [
        "ports.0.tally.offline_after: must be >= 1, got 0",
    ]
    tally = ("--set", "ports.0.protocol=tally")
    check = run("-m", "collector", "config", "check", str(DEMO_CONFIG), *tally,
                "--set", "ports.0.addresses=[1, 12]")  # fmt: skip
    assert check.stdout.splitlines() == [
        "ports.0.addresses.1: protocol 'tally' addresses are 1..9, got 12"
    ]
    decoded = run("-m", "collector", "decode", "--protocol", "tally", "3F 30 31 0D")
    assert decoded.returncode == 0, decoded.stderr
    assert '"text": "?01\\r"' in decoded.stdout


def test_the_real_daemon_polls_a_third_party_protocol_over_a_pty(
    tmp_path: Path, site: Path, procs: list[Proc]
) -> None:
    link = tmp_path / "pump"
    sim = stack.dispenser(
        tmp_path, link, orders=SALES, nozzles=2, rate=8, seed=5, protocol="tally",
        fill_seconds=0.2, extra=["--pumps", "2"],
    )  # fmt: skip
    procs.append(sim)
    store = tmp_path / "store.sqlite"
    overrides = [
        f"store.path={store}",
        f"ports.0.device={link}",
        "ports.0.protocol=tally",
        "ports.0.addresses=[1, 2]",
        "ports.0.poll_interval_ms=20",
        "ports.0.tally.offline_after=5",
        f"uplink.port={stack.free_port()}",  # nobody listens: the store keeps every sale
        "log.format=json",
    ]
    procs.append(stack.collector(tmp_path, DEMO_CONFIG, overrides))
    truth = sim.wait_lines(lambda line: "order_no" in line, SALES, 60)

    def stored() -> list[dict[str, object]]:
        try:
            db = open_readonly(store)
        except StoreUnavailable:
            return []
        try:
            return stored_orders(db, limit=100)
        finally:
            db.close()

    stack.wait_until(lambda: len(stored()) >= SALES, 60, f"{SALES} tally orders in the store")
    by_key = {(o["nozzle"], o["order_no"]): o for o in stored()}
    assert len(by_key) == SALES
    for expected in truth:
        got = by_key[(expected["nozzle"], expected["order_no"])]
        assert {f: got[f] for f in EXACT_FIELDS} == {f: expected[f] for f in EXACT_FIELDS}
    assert {o["nozzle"] for o in by_key.values()} <= {
        f"p01.a{a}.n{n}" for a in (1, 2) for n in (1, 2)
    }


def test_a_poll_port_takes_the_gap_from_the_descriptor(
    site: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """In this process too, once the distribution is importable: PollPort's
    inter-frame gap is the descriptor's (7 ms), not a table in collector/."""
    monkeypatch.syspath_prepend(str(site))
    import importlib

    descriptor = importlib.import_module("forecourt_tally").DESCRIPTOR
    monkeypatch.setattr(protocols, "_third_party", lambda: {"tally": descriptor})
    from buffer.store import OrderStore
    from collector.device.serialfd import LineSettings
    from collector.station.nozzles import NozzleTable
    from collector.station.port import PollPort

    store = OrderStore(tmp_path / "gap.sqlite")
    try:
        port = PollPort(
            number=1, line=LineSettings("/dev/null", 4800, 8, "N", 1, None),
            driver=protocols.load_driver("tally")([1]), store=store, nozzles=NozzleTable(),
            station="S", tz=UTC, poll_interval_s=0.1, response_timeout_s=0.3,
            on_commit=lambda: None,
        )  # fmt: skip
        assert port.inter_frame_gap_s == 0.007
    finally:
        store.close()
