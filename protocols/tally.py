"""The count every protocol's census shares: frames decoded from a stretch
of line bytes, good or bad, by side, with a few lines of evidence.

A protocol's ``census`` (protocols/<name>/census.py) walks its frames with
:func:`frames` (or its describer's walk), lets :meth:`Tally.sift` (or
:meth:`Tally.sift_walk`) count the framing errors, and tells, for each good
frame, which side sent it, which pump it names and how to say it;
:class:`Tally` keeps the counts and makes the
:class:`~protocols.descriptor.Census`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
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

    def sift(self, items: Iterable[Frame | ProtocolError]) -> Iterator[Frame]:
        """The frames among ``items``, in order; each framing error is counted bad."""
        for item in items:
            if isinstance(item, ProtocolError):
                self.bad += 1
            else:
                yield item

    def sift_walk(self, walk: Iterable[tuple[int, Frame | ProtocolError]]) -> Iterator[Frame]:
        """The frames of a describer's walk, ``(offset, item)`` in line order, as
        :meth:`sift`; its ``truncated`` error, a frame cut by the end of the
        bytes, is not counted."""
        return self.sift(item for _, item in walk if not _cut(item))

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


def _cut(item: object) -> bool:
    return isinstance(item, ProtocolError) and item.kind == "truncated"
