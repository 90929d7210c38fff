"""Keyword options of the Lanfeng poll driver, for ``[ports.lanfeng]`` (config
validates them): the totals poll master's (protocols/totalpoll_options.py)."""

from __future__ import annotations

from dataclasses import dataclass

from protocols.totalpoll_options import TotalsPollOptions


@dataclass(frozen=True, slots=True)
class LanfengOptions(TotalsPollOptions):
    """Keyword arguments of :class:`protocols.lanfeng.driver.LanfengPoller`."""
