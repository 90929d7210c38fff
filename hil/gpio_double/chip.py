"""A simulated GPIO chip: line levels, line requests and edge events, as the
kernel's GPIO character device (uAPI v2) gives them — over a Unix socket.

The kernel's ``gpio-sim`` module would give real lines, but it needs
configfs and a kernel built with GPIO support; the test machines have
neither (docs/decisions.md). So the chip is a process's object
(:class:`ChipServer`) listening on a Unix socket at the path a
``/dev/gpiochipN`` would be at, on an event loop of its own thread — as the
kernel answers a request while its caller blocks, the chip answers the
binding's blocking calls made from the collector's loop — and
:mod:`hil.gpio_double` is a binding with libgpiod's Python API that talks
to it. What is kept from the kernel (drivers/gpio/gpiolib-cdev.c):

- A request holds its lines alone (a second one is refused, EBUSY) until
  it is released (its socket closed).
- Each edge the request's ``edge_detection`` asks for (after
  ``active_low``, which inverts what is rising) is one 48-byte
  ``struct gpio_v2_line_event``: timestamp_ns (CLOCK_MONOTONIC unless the
  line asks for REALTIME), id (1 rising, 2 falling), offset, seqno (per
  request), line_seqno (per line), six words of padding.
- Events wait in a per-request buffer of ``event_buffer_size`` (default 16
  per line, at most 1024 as the kernel clamps it); when it is full the
  **oldest** event is dropped, its numbers already taken, so a reader sees
  the gap in line_seqno. (The socket's own buffer comes first: a request
  whose reader stops loses events only once that is full too.)
- ``get_values`` reads the levels now, not the queued events.

Not modelled: the kernel's debounce (lines here never bounce), bias and
drive (no electrical side), outputs, line names, info events.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import errno
import json
import os
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

#: ``struct gpio_v2_line_event`` (include/uapi/linux/gpio.h), little-endian.
EVENT = struct.Struct("<QIIII24x")
RISING_ID, FALLING_ID = 1, 2

#: The kernel's default buffer is 16 events per requested line, and it
#: clamps a requested size to 16 × GPIO_V2_LINES_MAX (64).
EVENTS_PER_LINE = 16
EVENT_BUFFER_MAX = 16 * 64

#: Bytes of a request line (JSON) a client may send before it is refused.
REQUEST_MAX = 64 * 1024

#: The longest a call into the chip's thread may take: a test's bound, not
#: a chip's (each call is a few list operations and non-blocking sends).
CALL_TIMEOUT_S = 10.0


@dataclass(slots=True)
class _LineSettings:
    edge: str  # "none" | "rising" | "falling" | "both"
    active_low: bool
    realtime: bool


@dataclass(slots=True)
class _Request:
    conn: socket.socket
    lines: dict[int, _LineSettings]
    capacity: int
    seqno: int = 0
    line_seqno: dict[int, int] = field(default_factory=dict)
    queue: deque[bytes] = field(default_factory=deque)  # the kernel's kfifo
    out: bytearray = field(default_factory=bytearray)  # a record half sent
    writing: bool = False
    dropped: int = 0


class ChipServer:
    """``lines`` input lines at ``path``, driven with :meth:`set_level` /
    :meth:`pulse` from any thread; the chip's state lives on its own thread."""

    def __init__(self, path: Path, lines: int, label: str = "gpio-double") -> None:
        self.path = Path(path)
        self.levels = [0] * lines
        self.label = label
        self.requests: list[_Request] = []
        self._partial: dict[socket.socket, bytearray] = {}
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name=f"gpio-double {self.path.name}", daemon=True
        )
        self._thread.start()
        try:
            self._call(self._listen)
        except BaseException:
            self._stop()
            raise

    def _call(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` on the chip's thread; its result or its exception."""
        done: concurrent.futures.Future[T] = concurrent.futures.Future()

        def run() -> None:
            try:
                done.set_result(fn(*args))
            except BaseException as exc:
                done.set_exception(exc)

        self._loop.call_soon_threadsafe(run)
        return done.result(timeout=CALL_TIMEOUT_S)

    def _listen(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(str(self.path))
        self._listener.listen(16)
        self._listener.setblocking(False)
        self._loop.add_reader(self._listener.fileno(), self._accept)

    def _stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=CALL_TIMEOUT_S)
        if not self._thread.is_alive():
            self._loop.close()

    # -- the lines --------------------------------------------------------------

    def set_level(self, offset: int, level: int) -> None:
        """The line's physical level is now ``level``; edges go to requests."""
        self._call(self._set_level, offset, level)

    def pulse(self, offset: int, count: int) -> None:
        """``count`` pulses (high, then low) on a line that rests low: all
        edges first, then sent, so more than a request holds drop its oldest."""
        self._call(self._pulse, offset, count)

    def requested(self, offset: int) -> bool:
        return self._call(lambda: any(offset in r.lines for r in self.requests))

    def dropped(self) -> int:
        """Events the request buffers dropped (the oldest, when full)."""
        return self._call(lambda: sum(r.dropped for r in self.requests))

    def pending(self) -> int:
        """Events queued or half sent, not yet in a request's socket."""
        return self._call(
            lambda: sum(len(r.queue) + -(-len(r.out) // EVENT.size) for r in self.requests)
        )

    def _set_level(self, offset: int, level: int) -> None:
        self._set(offset, level)
        self._flush_all()

    def _pulse(self, offset: int, count: int) -> None:
        for _ in range(count):
            self._set(offset, 1)
            self._set(offset, 0)
        self._flush_all()

    def _set(self, offset: int, level: int) -> None:
        before, self.levels[offset] = self.levels[offset], 1 if level else 0
        if before == self.levels[offset]:
            return
        for request in self.requests:
            settings = request.lines.get(offset)
            if settings is None:
                continue
            rising = bool(self.levels[offset]) != settings.active_low
            wanted = {"rising": rising, "falling": not rising, "both": True}
            if not wanted.get(settings.edge, False):
                continue
            request.seqno += 1
            request.line_seqno[offset] = request.line_seqno.get(offset, 0) + 1
            stamp = time.time_ns() if settings.realtime else time.monotonic_ns()
            kind = RISING_ID if rising else FALLING_ID
            record = EVENT.pack(stamp, kind, offset, request.seqno, request.line_seqno[offset])
            if len(request.queue) >= request.capacity:
                request.queue.popleft()
                request.dropped += 1
            request.queue.append(record)

    # -- the requests -----------------------------------------------------------

    def _accept(self) -> None:
        try:
            conn, _ = self._listener.accept()
        except BlockingIOError:
            return
        conn.setblocking(False)
        self._partial[conn] = bytearray()
        self._loop.add_reader(conn.fileno(), self._request_line, conn)

    def _request_line(self, conn: socket.socket) -> None:
        """The client's one JSON line: ``request`` (then events) or ``values``."""
        buffer = self._partial[conn]
        try:
            chunk = conn.recv(4096)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        buffer += chunk
        if chunk and b"\n" not in buffer and len(buffer) < REQUEST_MAX:
            return
        self._loop.remove_reader(conn.fileno())
        del self._partial[conn]
        try:
            message = json.loads(bytes(buffer).split(b"\n", 1)[0])
            if message["op"] == "values":
                levels = [self.levels[int(o)] for o in message["offsets"]]
                self._reply(conn, {"values": levels})
                conn.close()
                return
            request = self._open(conn, message)
        except OSError as exc:
            self._reply(conn, {"errno": exc.errno, "error": exc.strerror})
            conn.close()
            return
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            self._reply(conn, {"errno": errno.EINVAL, "error": str(exc)})
            conn.close()
            return
        self._reply(conn, {"ok": True})
        self.requests.append(request)
        # The client closing its end is the release; nothing else comes from it.
        self._loop.add_reader(conn.fileno(), self._released, request)

    def _open(self, conn: socket.socket, message: dict[str, Any]) -> _Request:
        lines: dict[int, _LineSettings] = {}
        for key, item in message["lines"].items():
            offset = int(key)
            if not 0 <= offset < len(self.levels):
                raise OSError(errno.EINVAL, "Invalid argument")
            if any(offset in r.lines for r in self.requests):
                raise OSError(errno.EBUSY, "Device or resource busy")
            lines[offset] = _LineSettings(
                str(item["edge"]), bool(item["active_low"]), bool(item["realtime"])
            )
        if not lines:
            raise OSError(errno.EINVAL, "Invalid argument")
        size = message.get("event_buffer_size") or EVENTS_PER_LINE * len(lines)
        return _Request(conn, lines, min(int(size), EVENT_BUFFER_MAX))

    @staticmethod
    def _reply(conn: socket.socket, body: dict[str, Any]) -> None:
        with contextlib.suppress(OSError):
            conn.setblocking(True)
            conn.sendall(json.dumps(body).encode() + b"\n")
            conn.setblocking(False)

    def _released(self, request: _Request) -> None:
        try:
            if request.conn.recv(4096):
                return  # nothing is expected; ignore it
        except BlockingIOError:
            return
        except OSError:
            pass
        self._drop(request)

    def _drop(self, request: _Request) -> None:
        if request in self.requests:
            self.requests.remove(request)
        with contextlib.suppress(ValueError, OSError):
            self._loop.remove_reader(request.conn.fileno())
        with contextlib.suppress(ValueError, OSError):
            self._loop.remove_writer(request.conn.fileno())
        request.conn.close()

    # -- sending ----------------------------------------------------------------

    def _flush_all(self) -> None:
        for request in list(self.requests):
            if not request.writing:
                self._flush(request)

    def _flush(self, request: _Request) -> None:
        """Send what the socket takes now; the rest waits for it to drain."""
        while request.out or request.queue:
            if not request.out:
                # Batch what is queued: one send per wake-up, not per event.
                while request.queue and len(request.out) < 64 * EVENT.size:
                    request.out += request.queue.popleft()
            try:
                sent = request.conn.send(request.out)
            except BlockingIOError:
                break
            except OSError:
                self._drop(request)
                return
            del request.out[:sent]
        pending = bool(request.out or request.queue)
        if pending != request.writing:
            request.writing = pending
            if pending:
                self._loop.add_writer(request.conn.fileno(), self._flush, request)
            else:
                self._loop.remove_writer(request.conn.fileno())

    def close(self) -> None:
        """The chip is gone: every request's socket closes, the path is
        removed, the chip's thread ends."""
        if self._loop.is_closed():
            return
        try:
            self._call(self._close)
        finally:
            self._stop()

    def _close(self) -> None:
        for request in list(self.requests):
            self._drop(request)
        for conn in list(self._partial):
            with contextlib.suppress(ValueError, OSError):
                self._loop.remove_reader(conn.fileno())
            conn.close()
        self._partial.clear()
        self._loop.remove_reader(self._listener.fileno())
        self._listener.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
