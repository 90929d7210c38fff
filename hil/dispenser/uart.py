"""What a UART set to one line setting receives from one set to another.

A pty carries bytes, not bits: a collector at the wrong rate or parity
would read a simulator's frames perfectly. :func:`transcode` puts the bits
back: the sender's bytes become the waveform its UART would drive (start
bit, data bits least significant first, parity, stop bits; idle high
before and after), and the receiver samples it the way a UART does — it
waits for a falling edge, samples the middle of each of *its* bit times,
and checks the stop bit (framing) and its parity. What comes out is what a
real UART at the wrong speed delivers: fewer or more bytes, wrong ones,
and errors. A byte with an error reads as sampled unless the receiver
checks its input (INPCK): then as 0x00, or not at all with IGNPAR (Linux
n_tty; PARMRK is not modelled). A break (all zero, stop bit included)
reads as 0x00, or not at all with IGNBRK.

Settings that agree (rates within :data:`SAME_RATE` of each other, the same
parity and data bits) pass the bytes unchanged: a 5760 UART reads a 5787
line (the FCC's IO board drives 5787 sites at 5760, protocols.md §4). The
stop bits never matter: a UART checks the first one only.

Pure and deterministic (the same bytes garble the same way); a write is
one burst of back-to-back characters, as a UART sends a frame.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

#: Relative rate difference a UART absorbs: sampling in the middle of each
#: bit drifts half a bit over ~10 bits at 5 %; 2 % leaves margin.
SAME_RATE = 0.02


@dataclass(frozen=True, slots=True)
class Uart:
    """One end's setting (hil's own record: hil/ never needs the collector's)."""

    baudrate: int
    parity: str = "N"
    bytesize: int = 8
    stopbits: int = 1
    #: INPCK: the receiver does not pass a byte with a parity or framing error as read.
    checks_input: bool = False
    #: IGNPAR: such a byte is dropped (else 0x00).
    drops_errors: bool = False
    #: IGNBRK: a break is dropped (else 0x00).
    drops_breaks: bool = False

    def agrees_with(self, other: Uart) -> bool:
        ratio = self.baudrate / other.baudrate
        return (
            abs(ratio - 1) <= SAME_RATE
            and self.parity == other.parity
            and self.bytesize == other.bytesize
        )


def _bits(data: bytes, uart: Uart) -> list[int]:
    """The waveform of ``data`` sent back to back, one level per sender bit."""
    out: list[int] = []
    for byte in data:
        out.append(0)  # start
        ones = 0
        for i in range(uart.bytesize):
            bit = (byte >> i) & 1
            ones += bit
            out.append(bit)
        if uart.parity == "E":
            out.append(ones & 1)
        elif uart.parity == "O":
            out.append(1 - (ones & 1))
        out.extend([1] * uart.stopbits)
    return out


def transcode(data: bytes, sender: Uart, receiver: Uart) -> bytes:
    """What ``receiver`` reads when ``sender`` writes ``data`` (module docstring)."""
    if not data or sender.agrees_with(receiver):
        return data
    bits = _bits(data, sender)
    # Times in sender bits; the receiver's bit lasts ``step`` of them.
    step = sender.baudrate / receiver.baudrate
    end = len(bits)

    def level(t: float) -> int:
        i = int(t)
        return bits[i] if 0 <= i < end else 1  # idle high outside the burst

    out = bytearray()
    t = 0.0
    width = 1 + receiver.bytesize + (receiver.parity != "N")
    while True:
        # Hunt for a falling edge: the first low level at or after t.
        i = int(t)
        while i < end and bits[i] == 1:
            i += 1
        if i >= end:
            break
        start = max(float(i), t)
        if level(start + step / 2) != 0:  # a glitch, not a start bit
            t = start + step / 2
            continue
        value = ones = 0
        for n in range(receiver.bytesize):
            bit = level(start + step * (1.5 + n))
            value |= bit << n
            ones += bit
        error = False
        if receiver.parity != "N":
            parity = level(start + step * (1.5 + receiver.bytesize))
            error = parity != ((ones & 1) if receiver.parity == "E" else 1 - (ones & 1))
        stop_at = start + step * (0.5 + width)
        stop = level(stop_at)
        if stop == 0 and value == 0:
            if not receiver.drops_breaks:
                out.append(0)  # a break
        elif stop == 0 or error:
            if not receiver.checks_input:
                out.append(value)
            elif not receiver.drops_errors:
                out.append(0)
        else:
            out.append(value)
        t = stop_at  # a UART hunts again from the middle of the stop bit
        if t >= end:
            break
    return bytes(out)


def add_arguments(parser: Any) -> None:
    """``--baudrate``, ``--parity``, ``--bytesize``: a simulator's line setting."""
    parser.add_argument(
        "--baudrate", type=int, help="line rate (default: the protocol's first line setting)"
    )
    parser.add_argument("--parity", choices=("N", "E", "O"), help="parity (default: as --baudrate)")
    parser.add_argument(
        "--bytesize", type=int, choices=(7, 8), help="data bits (default: as above)"
    )


def from_arguments(args: Any, protocol: str) -> Uart:
    """The setting ``add_arguments`` gave, each one missing from the protocol's
    first line setting (its descriptor's ``line_settings[0]``)."""
    from protocols import descriptor

    first = descriptor(protocol).default_line
    baudrate = args.baudrate or (first.baudrate if first else 9600)
    parity = args.parity or (first.parity if first else "N")
    bytesize = args.bytesize or (first.bytesize if first else 8)
    stopbits = first.stopbits if first else 1
    return Uart(baudrate, parity, bytesize, stopbits)
