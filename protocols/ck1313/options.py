"""Keyword options of the CK1313 poll driver, for ``[ports.ck1313]`` (config
validates them): the totals poll master's (protocols/totalpoll_options.py)."""

from __future__ import annotations

from dataclasses import dataclass

from protocols.totalpoll_options import TotalsPollOptions


@dataclass(frozen=True, slots=True)
class Ck1313Options(TotalsPollOptions):
    """Keyword arguments of :class:`protocols.ck1313.driver.Ck1313Poller`."""
