"""Gilbarco two-wire one-byte commands and status replies (protocols.md §4).

Facts: commands are one byte ``cmd<<4 | pump``, status replies one byte
``status<<4 | pump``; where the facts stop, "our documented assumption".

Pump nibble
    Pumps 1..16 are the low nibble of every command and status byte; pump 16
    is nibble 0 (``16 & 0x0F``), so nibble 0 reads back as pump 16.

Commands (master → pump), high nibble
    0 status, 4 transaction data, 5 totals — the read-only ones, the only
    ones our driver may send (SPEC D20). 1 authorise, 2 data next (price
    download), 3 stop are named here for :mod:`protocols.gilbarco.describe`
    only; nothing builds them.

Status (pump → master), high nibble
    6 off, 7 call (nozzle lifted), 8 authorised, 9 busy (fuelling), A and B
    end of transaction, C stopped (protocols.md §4). Our documented
    assumption on A/B: A = a finished transaction the pump has not yet had
    collected, B = the same after collection; the pump keeps showing B (and
    answering 4 / 5 with that transaction) until the next lift. Any other
    nibble (0–5, D–F) is not a status of this subset: ``bad_message``.
"""

from __future__ import annotations

from protocols.events import NozzleState

#: Pumps on one loop: the pump number is one nibble, 16 sent as 0 (§4).
MIN_PUMP, MAX_PUMP = 1, 16
NIBBLE = 0x0F

#: Command codes, the high nibble of a master byte (protocols.md §4).
CMD_STATUS = 0x0
CMD_AUTHORISE = 0x1  # never sent (D20): named for describe only
CMD_DATA_NEXT = 0x2  # never sent (D20): price download
CMD_STOP = 0x3  # never sent (D20)
CMD_TRANSACTION = 0x4
CMD_TOTALS = 0x5
COMMAND_NAMES: dict[int, str] = {
    CMD_STATUS: "status",
    CMD_AUTHORISE: "authorise",
    CMD_DATA_NEXT: "data next",
    CMD_STOP: "stop",
    CMD_TRANSACTION: "transaction data",
    CMD_TOTALS: "totals",
}

#: Status codes, the high nibble of a pump's status byte (protocols.md §4).
STATUS_OFF = 0x6
STATUS_CALL = 0x7
STATUS_AUTHORISED = 0x8
STATUS_BUSY = 0x9
STATUS_END = 0xA  # end of transaction, not yet collected (our assumption)
STATUS_END_READ = 0xB  # end of transaction, collected, still shown (our assumption)
STATUS_STOPPED = 0xC
END_STATUSES = frozenset({STATUS_END, STATUS_END_READ})
STATUS_NAMES: dict[int, str] = {
    STATUS_OFF: "off",
    STATUS_CALL: "call",
    STATUS_AUTHORISED: "authorised",
    STATUS_BUSY: "busy",
    STATUS_END: "end of transaction",
    STATUS_END_READ: "end of transaction (collected)",
    STATUS_STOPPED: "stopped",
}
#: Status → nozzle state. 8 (authorised, not yet delivering) is idle; A/B the
#: nozzle is hung up after a sale; C (stopped by the console or an error)
#: needs attention, so abnormal.
STATUS_STATE: dict[int, NozzleState] = {
    STATUS_OFF: NozzleState.IDLE,
    STATUS_CALL: NozzleState.LIFTED,
    STATUS_AUTHORISED: NozzleState.IDLE,
    STATUS_BUSY: NozzleState.FUELLING,
    STATUS_END: NozzleState.IDLE,
    STATUS_END_READ: NozzleState.IDLE,
    STATUS_STOPPED: NozzleState.ABNORMAL,
}


def pump_nibble(pump: int) -> int:
    """Pump 1..16 → its nibble (16 → 0)."""
    if not MIN_PUMP <= pump <= MAX_PUMP:
        raise ValueError(f"pump {pump} is not 1..16")
    return pump & NIBBLE


def nibble_pump(nibble: int) -> int:
    """Nibble → pump 1..16 (0 → 16)."""
    return (nibble & NIBBLE) or MAX_PUMP


def command_byte(command: int, pump: int) -> int:
    """``cmd<<4 | pump``; raises ValueError for a command beyond one nibble."""
    if not 0 <= command <= NIBBLE:
        raise ValueError(f"command {command} is not one nibble")
    return command << 4 | pump_nibble(pump)


def status_byte(status: int, pump: int) -> int:
    """``status<<4 | pump`` (the pump's side)."""
    if not 0 <= status <= NIBBLE:
        raise ValueError(f"status {status} is not one nibble")
    return status << 4 | pump_nibble(pump)
