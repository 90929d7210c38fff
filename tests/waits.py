"""Waiting on the event itself, never on a guess of how long it takes."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable
from typing import Literal


class WatchedLock(asyncio.Lock):
    """An :class:`asyncio.Lock` that says when it is held (:attr:`held`) and
    when a second task waits for it (:attr:`contended`)."""

    def __init__(self) -> None:
        super().__init__()
        self.held = asyncio.Event()
        self.contended = asyncio.Event()

    async def acquire(self) -> Literal[True]:
        if self.locked():
            self.contended.set()
        await super().acquire()
        self.held.set()
        return True


async def read_exactly(fd: int, n: int, timeout: float = 5.0) -> bytes:
    """``n`` bytes from the non-blocking ``fd`` as they become readable; fewer
    when ``timeout`` passes first (the caller's assertion says what came)."""
    loop = asyncio.get_running_loop()
    readable = asyncio.Event()
    got = bytearray()
    loop.add_reader(fd, readable.set)
    try:
        async with asyncio.timeout(timeout):
            while len(got) < n:
                await readable.wait()
                readable.clear()
                with contextlib.suppress(BlockingIOError):
                    got += os.read(fd, n - len(got))
    except TimeoutError:
        pass
    finally:
        loop.remove_reader(fd)
    return bytes(got)


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    """Whether ``condition()`` came true within ``timeout``; it is asked again
    at every turn of a short poll (the poll sets no pace: nothing else waits
    on it). For a state with no event to wait on, such as a socket's file."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            return False
        await asyncio.sleep(0.01)  # polls the condition, it sets no pace
    return True
