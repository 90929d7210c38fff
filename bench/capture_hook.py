"""Cost of the capture hook on the poll path when nobody captures.

.venv/bin/python bench/capture_hook.py
"""

from __future__ import annotations

import timeit

from collector.station import capture

CALLS = 1_000_000
FRAME = bytes.fromhex("fa0001")


def main() -> None:
    idle = timeit.timeit(lambda: capture.feed(1, "tx", FRAME), number=CALLS)
    empty = timeit.timeit(lambda: None, number=CALLS)
    tap = capture.start(1)
    busy = timeit.timeit(lambda: capture.feed(1, "tx", FRAME), number=capture.MAX_FRAMES)
    capture.stop(1, tap)
    print(f"feed, nobody captures: {(idle - empty) / CALLS * 1e9:.0f} ns/call (over a bare call)")
    print(f"feed, one capture:     {busy / capture.MAX_FRAMES * 1e9:.0f} ns/call")


if __name__ == "__main__":
    main()
