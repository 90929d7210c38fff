"""The count every protocol's census shares: frames decoded from a stretch
of line bytes, good or bad, by side, with a few lines of evidence.

A protocol's ``census`` (protocols/<name>/census.py) walks its frames with
:func:`frames` and tells, for each good one, which side sent it, which pump
it names and how to say it; :class:`Tally` keeps the counts and makes the
:class:`~protocols.descriptor.Census`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TypeVar

from protocols.descriptor import Census
from protocols.events import ProtocolError

Frame = TypeVar("Frame")


def frames(
    data: bytes, decode_at: Callable[[bytes, int], tuple[Frame | ProtocolError | None, int]]
) -> Iterator[Frame | ProtocolError]:
    """Each frame or framing error of ``data`` in order (a garbage run once);
    a frame cut by the end of ``data`` is neither."""
    pos = 0
    while True:
        item, consumed = decode_at(data, pos)
        if consumed == 0:
            return
        pos += consumed
        if item is not None:
            yield item


class Tally:
    """The counts of one census."""

    def __init__(self, evidence: int) -> None:
        #: Frames described in ``Census.evidence``: enough to recognise the line.
        self.most = evidence
        self.good = self.bad = self.master = self.pump = 0
        self.addresses: set[int] = set()
        self.evidence: list[str] = []

    def frame(self, side: str | None, address: int | None, say: str | None) -> None:
        """A good frame: sent by ``side`` (``master``, ``pump``, None: not
        told), naming pump ``address`` (None: none); ``say`` is its line of
        evidence (None: it says nothing new), kept while there is room."""
        self.good += 1
        self.master += side == "master"
        self.pump += side == "pump"
        if address is not None:
            self.addresses.add(address)
        if say is not None and len(self.evidence) < self.most:
            self.evidence.append(say)

    def census(self) -> Census:
        return Census(
            self.good,
            self.bad,
            frozenset(self.addresses),
            self.master,
            self.pump,
            tuple(self.evidence),
        )
