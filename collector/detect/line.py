"""One line as detect uses it: read for a while, or send a probe and collect its answer.

The line is opened through collector/device/serialfd.py with input checking on
(INPCK, IGNPAR, IGNBRK): at a wrong rate or parity, bytes with framing or
parity errors are dropped and break frames instead of passing as plausible
bytes (as 0x00 they would look like commands to a one-byte protocol). A
listening line is opened **read-only**: the kernel refuses any write.
The only thing :meth:`Line.exchange` writes is a :class:`~.plan.Probe`'s
request, which its family's driver made (collector/detect/plan.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import termios
import time
from collections.abc import Callable

from collector.detect.plan import Probe
from collector.device.serialfd import LineSettings, open_line
from protocols.descriptor import LineSetting

#: Bytes kept from one listening window: at 19200 baud a 10 s window is
#: ~19 kB; beyond this a window says nothing more.
MAX_WINDOW_BYTES = 64 * 1024
#: Bytes read per wake-up.
READ_CHUNK = 4096


class LineGone(OSError):
    """The device cannot be opened at all (missing, not a serial line, no
    permission): no other setting will do better."""


class Line:
    """An open line at one setting; ``written`` counts every byte sent.

    Raises :class:`LineGone` when the device cannot be opened, a plain
    ``OSError`` when it refuses this setting (collector/device/serialfd.py).
    """

    def __init__(self, device: str, setting: LineSetting, *, writable: bool) -> None:
        self.device = device
        self.setting = setting
        self.writable = writable
        line = LineSettings(
            device, setting.baudrate, setting.bytesize, setting.parity, setting.stopbits,
            check_input=True,
        )  # fmt: skip
        try:
            self.fd = open_line(line, writable=writable)
        except termios.error as exc:  # tcgetattr: not a terminal at all
            raise LineGone(f"not a serial line ({exc.args[-1]})") from None
        except OSError as exc:
            if exc.errno is not None:  # the open itself (a refused setting has none)
                raise LineGone(exc.errno, exc.strerror) from None
            raise
        # What arrived before the setting applied was read at another one.
        termios.tcflush(self.fd, termios.TCIFLUSH)
        self.written = 0
        self._buffer = bytearray()
        self._arrived = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self.fd, self._readable)
        self.error: OSError | None = None

    def _readable(self) -> None:
        try:
            chunk = os.read(self.fd, READ_CHUNK)
        except BlockingIOError:
            return
        except OSError as exc:  # the adapter went away
            self.error = exc
            self._loop.remove_reader(self.fd)
            self._arrived.set()
            return
        if not chunk:  # EOF: a pty whose other end closed
            self.error = OSError("the line closed")
            self._loop.remove_reader(self.fd)
        elif len(self._buffer) < MAX_WINDOW_BYTES:
            self._buffer += chunk[: MAX_WINDOW_BYTES - len(self._buffer)]
        self._arrived.set()

    def take(self) -> bytes:
        data = bytes(self._buffer)
        self._buffer.clear()
        return data

    async def _until(self, deadline: float, done: Callable[[bytes], bool]) -> None:
        """Wait for bytes until ``done(buffer)`` or the monotonic ``deadline``."""
        while not done(bytes(self._buffer)) and self.error is None:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(left):
                    await self._arrived.wait()

    async def listen(
        self, seconds: float, enough: Callable[[bytes], bool] = lambda _: False
    ) -> bytes:
        """Every byte within ``seconds`` (or until ``enough`` says so)."""
        self.take()
        await self._until(time.monotonic() + seconds, enough)
        if self.error is not None:
            raise self.error
        return self.take()

    async def exchange(
        self, probe: Probe, gap_s: float, reply_s: float, quiet_s: float
    ) -> tuple[bytes, bool]:
        """Send the probe's request after ``gap_s`` of quiet and collect the
        answer: (every byte back, whether the probe's driver accepted a reply).
        Nothing back within ``reply_s``: silence. Bytes that do not complete
        an answer the driver takes are collected until ``quiet_s`` passes
        without one (a garbled answer is still an answer to judge)."""
        assert self.writable, "a listening line writes nothing"
        await asyncio.sleep(gap_s)
        self.take()  # whatever came before the request is not its answer
        view = memoryview(probe.request)
        while view:
            try:
                sent = os.write(self.fd, view)
            except BlockingIOError:
                await asyncio.sleep(0.001)  # the adapter's buffer drains in a char time
                continue
            self.written += sent
            view = view[sent:]
        driver, fed = probe.driver, 0

        def accepted(buffer: bytes) -> bool:
            nonlocal fed
            if len(buffer) > fed:
                try:
                    driver.receive_data(buffer[fed:])
                except Exception:  # a driver bug on foreign bytes: not an answer
                    return False
                fed = len(buffer)
            return not driver.awaiting_response

        await self._until(time.monotonic() + reply_s, accepted)
        size = -1
        while self._buffer and len(self._buffer) != size and not accepted(bytes(self._buffer)):
            size = len(self._buffer)  # bytes came: wait for the rest until quiet

            def more(buffer: bytes, seen: int = size) -> bool:
                return len(buffer) > seen

            await self._until(time.monotonic() + quiet_s, more)
        if self.error is not None:
            raise self.error
        raw = self.take()
        return raw, accepted(raw)

    def close(self) -> None:
        with contextlib.suppress(ValueError, OSError):
            self._loop.remove_reader(self.fd)
        os.close(self.fd)
