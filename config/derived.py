"""What the config models derive from their fields, without pydantic.

A model's derived attributes live in a mixin here, not on the pydantic
class: the model inherits the mixin, and so does the daemon's view of it
(config/view.py), which must not import pydantic. tests/test_config_view.py
checks that no model defines a public attribute of its own besides fields.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import TYPE_CHECKING

#: A wall-clock UTC offset, ``±HH:MM``.
TIMEZONE_PATTERN = re.compile(r"^([+-])(\d{2}):(\d{2})$")
#: Real-world offsets run from −12:00 to +14:00; anything beyond is a typo.
TIMEZONE_MAX_OFFSET = dt.timedelta(hours=14)


def parse_offset(text: str) -> dt.timedelta:
    """``+08:00`` → 8 h; ValueError with the reason a technician reads."""
    match = TIMEZONE_PATTERN.match(text)
    reason = f"must be a UTC offset +HH:MM or -HH:MM within ±14:00, got {text!r}"
    if not match:
        raise ValueError(reason)
    sign, hours, minutes = match.groups()
    if int(minutes) >= 60:
        raise ValueError(reason)
    offset = dt.timedelta(hours=int(hours), minutes=int(minutes))
    if offset > TIMEZONE_MAX_OFFSET:
        raise ValueError(reason)
    return -offset if sign == "-" else offset


class DeviceDerived:
    """``[device]``: the station's wall-clock zone."""

    if TYPE_CHECKING:
        timezone: str

    @property
    def tzinfo(self) -> dt.timezone:
        """The dispensers' wall-clock offset; their BCD times carry none."""
        return dt.timezone(parse_offset(self.timezone))
