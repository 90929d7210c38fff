"""GB/T 9081 identities of one port's pumps and nozzles, as last stored (SPEC D13, A6).

What the sink needs to report identities store first: the identity each
pump (``nozzle`` None) or nozzle last had *in the store* — read from the
store once after a restart, so a part swapped while the collector was off
is still found, and an order after a restart still carries its nozzle's
uid — and which alarms a change raises (:func:`changes`, pure).
"""

from __future__ import annotations

from typing import Any

import structlog

from buffer.store import OrderStore, StoreError

log = structlog.get_logger("collector.station.port")

#: The component that identifies the nozzle itself (protocols/events.py
#: ``COMPONENT_NAMES``): its change is NOZZLE_UID_CHANGED, every other
#: part's COMPONENT_CHANGED.
NOZZLE_UID = "nozzle_uid"

Where = tuple[int, int | None]  # (bus address, nozzle or None for the pump)


class Identities:
    """The last stored identity per pump / nozzle of one port."""

    def __init__(self, store: OrderStore) -> None:
        self.store = store
        self._known: dict[Where, dict[str, str] | None] = {}

    def known(self, where: Where, source: str) -> dict[str, str] | None:
        """The identity last stored for ``where`` (``source`` its record key):
        from memory, after a restart from the store (read once; a store that
        cannot be read now is asked again next time)."""
        if where not in self._known:
            try:
                record = self.store.last_record_under("nozzle", f"{source}:components:")
            except StoreError as exc:
                log.error("identity_not_read", source=source, error=str(exc))
                return None
            components = None if record is None else record.get("components")
            self._known[where] = dict(components) if isinstance(components, dict) else None
        return self._known[where]

    def stored(self, where: Where, components: dict[str, str]) -> None:
        """``components`` are in the store now: the identity from here on."""
        self._known[where] = dict(components)


def changes(before: dict[str, str], after: dict[str, str]) -> list[tuple[str, dict[str, Any]]]:
    """The alarms (code, detail) an identity change raises: NOZZLE_UID_CHANGED
    when the nozzle's own ID differs from a known one, COMPONENT_CHANGED for
    any other part that differs."""
    out: list[tuple[str, dict[str, Any]]] = []
    if before.get(NOZZLE_UID) is not None and before.get(NOZZLE_UID) != after.get(NOZZLE_UID):
        out.append(
            ("NOZZLE_UID_CHANGED", {"before": before[NOZZLE_UID], "after": after.get(NOZZLE_UID)})
        )
    changed = sorted(k for k in {*before, *after} - {NOZZLE_UID} if before.get(k) != after.get(k))
    if changed:
        detail = {
            "changed": changed,
            "before": {k: before.get(k) for k in changed},
            "after": {k: after.get(k) for k in changed},
        }
        out.append(("COMPONENT_CHANGED", detail))
    return out
