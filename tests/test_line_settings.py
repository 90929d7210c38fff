"""Line settings on simulated lines: a pty that keeps them, a simulator that honours them.

A pty has no baud rate and the kernel drops its parity and data bits, so a
collector at the wrong setting would read a simulator's frames perfectly.
collector/device/serialfd.py keeps every setting on a pty (the rate as a number,
parity and data bits in marks a pty holds); the simulator reads them at
each write and garbles what a UART at that setting would get
(hil/dispenser/uart.py), both ways.
"""

from __future__ import annotations

import os
import random
import select
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import protocols
from collector.device.serialfd import LineSettings, applied, open_line
from hil import stack
from hil.dispenser.uart import Uart, transcode
from protocols.sinopec.census import census
from protocols.sinopec.driver import SinopecPoller

#: protocols.md §2, "Computed examples (CRC verified)".
SINOPEC_POLL = bytes.fromhex("FA 00 01 01 00 01 30 B8 3D")


def brand_table() -> list[protocols.LineSetting]:
    return sorted({s for d in protocols.descriptors() for s in d.line_settings}, key=str)


def test_settings_that_agree_pass_every_byte() -> None:
    data = SINOPEC_POLL * 3
    assert transcode(data, Uart(9600, "E"), Uart(9600, "E", checks_input=True)) == data
    # An FCC's IO board drives 5787 lines at 5760 (protocols.md §4): the same line.
    assert transcode(data, Uart(5787, "E"), Uart(5760, "E", checks_input=True)) == data


def test_a_wrong_parity_shows_only_to_a_uart_that_checks() -> None:
    # 8E1 read at 8N1: the parity bit lands where the stop bit is expected;
    # a UART that does not check passes the data bits as they are.
    assert transcode(SINOPEC_POLL, Uart(9600, "E"), Uart(9600, "N")) == SINOPEC_POLL
    checked = transcode(SINOPEC_POLL, Uart(9600, "E"), Uart(9600, "N", checks_input=True))
    assert len(checked) == len(SINOPEC_POLL) and checked != SINOPEC_POLL
    assert census(checked).good_frames == 0


@pytest.mark.parametrize(
    ("sender", "receiver"),
    [(9600, 4800), (4800, 9600), (9600, 19200), (19200, 9600), (9600, 5760)],
)
def test_a_wrong_rate_delivers_other_bytes_never_the_frame(sender: int, receiver: int) -> None:
    data = SINOPEC_POLL * 4
    got = transcode(data, Uart(sender, "E"), Uart(receiver, "E", checks_input=True))
    assert got != data and census(got).good_frames == 0
    assert got == transcode(data, Uart(sender, "E"), Uart(receiver, "E", checks_input=True))


@pytest.mark.parametrize("setting", brand_table(), ids=str)
def test_a_pty_keeps_every_setting_of_the_brand_table(setting: protocols.LineSetting) -> None:
    master, slave = os.openpty()
    try:
        device = os.ttyname(slave)
        line = LineSettings(device, setting.baudrate, setting.bytesize, setting.parity, 1)
        for _ in range(2):  # the same setting again: a pty answers EINVAL, still applied
            fd = open_line(line, writable=True)
            os.close(fd)
            got = applied(slave)
            assert (got.baudrate, got.parity, got.bytesize) == (
                setting.baudrate,
                setting.parity,
                setting.bytesize,
            )
        seven = LineSettings(device, 4800, 7, "O", 2, check_input=True)
        os.close(open_line(seven, writable=True))
        got = applied(slave)
        assert (got.bytesize, got.parity, got.stopbits, got.input_checked) == (7, "O", 2, True)
    finally:
        os.close(master)
        os.close(slave)


def test_the_simulator_answers_only_a_peer_at_its_own_setting(tmp_path: Path) -> None:
    """A Sinopec simulator at a setting drawn from its list answers the poll
    of a line at that setting, and at every other setting of the brand
    table the poller gets nothing it can read (5760 and 5787 are one line to a
    UART: protocols.md §4)."""
    rng = random.Random()
    own = rng.choice(protocols.descriptor("sinopec").line_settings)
    address = rng.randint(1, 99)
    link = tmp_path / "pump"
    argv = [
        sys.executable, "-m", "hil.dispenser", "--protocol", "sinopec", "--link", str(link),
        "--nozzles", "1", "--orders", "0", "--rate", "1", "--address", str(address),
        "--baudrate", str(own.baudrate), "--parity", own.parity,
    ]  # fmt: skip
    sim = subprocess.Popen(argv, stderr=subprocess.DEVNULL)
    try:
        stack.wait_until(link.exists, 10, "the simulator's link")
        for setting in brand_table():
            agrees = Uart(setting.baudrate, setting.parity).agrees_with(
                Uart(own.baudrate, own.parity)
            )
            line = LineSettings(str(link), setting.baudrate, 8, setting.parity, 1, None, True)
            fd = open_line(line, writable=True)
            try:
                os.write(fd, SinopecPoller([address]).next_request() or b"")
                if agrees:  # the answer, as soon as it is whole
                    got = read_until(fd, lambda b: census(b).pump_frames > 0, 5.0)
                else:  # nothing readable in ten times what the answer takes
                    got = read_until(fd, lambda b: False, 0.15)
            finally:
                os.close(fd)
            frames = census(got)
            if agrees:
                assert frames.pump_frames == 1 and frames.addresses == {address}, (own, got)
            else:
                assert frames.good_frames == 0, (own, setting, got.hex(" "))
    finally:
        sim.terminate()
        sim.wait(10)


def read_until(fd: int, done: Callable[[bytes], bool], seconds: float) -> bytes:
    """What arrives on ``fd`` until ``done`` says it is enough, or ``seconds``."""
    out = bytearray()
    deadline = time.monotonic() + seconds
    while not done(bytes(out)) and (left := deadline - time.monotonic()) > 0:
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            out += os.read(fd, 4096)
    return bytes(out)
