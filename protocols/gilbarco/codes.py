"""Gilbarco two-wire one-byte commands and status replies.

Sources: protocols.md §4; the open FCC's Gilbarco drivers
(``fangym0335/first src/lischn001.c`` 美国长吉 and ``src/lischn022.c`` 北京长吉,
the same lines in both where not said otherwise). docs/protocols/gilbarco.md
holds every fact with its citation.

Pump nibble
    Commands and status replies are one byte: high nibble the command or
    status, low nibble the pump. Pumps 1..16; pump 16 is nibble 0
    (§4; ``phyfp % 16``, lischn001.c:173).

Commands (master → pump), high nibble
    0 status, 4 transaction data, 5 totals, 6 running display: read-only
    (§4), the only ones our poller may send (SPEC D20). 1 authorise, 2
    "data next" (price, preset or special-function data follows, after the
    pump answered D), 3 stop, and ``FC`` all stop (lischn001.c:1771) change
    the pump: named here so a monitor and ``forecourt decode`` can read a
    POS's traffic; nothing builds them.

Status (pump → master), high nibble
    0 data error (lischn001.c:59 ``PUMP_ERROR``), 6 off, 7 call (nozzle
    lifted), 8 authorised, 9 busy (delivering), A and B end of transaction
    (PEOT / FEOT, lischn001.c:64-65; the FCC treats them alike,
    lischn001.c:800-801), C stopped, D ready to receive data (the reply to
    2, lischn001.c:1246). Any other nibble (1–5, E, F) is not a status.
"""

from __future__ import annotations

from protocols.events import NozzleState

#: Pumps on one loop: the pump number is one nibble, 16 sent as 0 (§4).
MIN_PUMP, MAX_PUMP = 1, 16
NIBBLE = 0x0F

#: Command codes, the high nibble of a master byte (§4).
CMD_STATUS = 0x0
CMD_AUTHORISE = 0x1  # never sent (D20)
CMD_DATA_NEXT = 0x2  # never sent (D20): price / preset / special function data follows
CMD_STOP = 0x3  # never sent (D20)
CMD_TRANSACTION = 0x4
CMD_TOTALS = 0x5
CMD_RUNNING = 0x6
#: ``FC``: stop every pump on the loop (lischn001.c:1771). Never sent (D20).
ALL_STOP = 0xFC
COMMAND_NAMES: dict[int, str] = {
    CMD_STATUS: "status",
    CMD_AUTHORISE: "authorise",
    CMD_DATA_NEXT: "data next",
    CMD_STOP: "stop",
    CMD_TRANSACTION: "transaction data",
    CMD_TOTALS: "totals",
    CMD_RUNNING: "running display",
}

#: Status codes, the high nibble of a pump's status byte (§4, lischn001.c:59-66).
STATUS_DATA_ERROR = 0x0
STATUS_OFF = 0x6
STATUS_CALL = 0x7
STATUS_AUTHORISED = 0x8
STATUS_BUSY = 0x9
STATUS_PEOT = 0xA
STATUS_FEOT = 0xB
STATUS_STOPPED = 0xC
STATUS_SEND_DATA = 0xD
END_STATUSES = frozenset({STATUS_PEOT, STATUS_FEOT})
STATUS_NAMES: dict[int, str] = {
    STATUS_DATA_ERROR: "data error",
    STATUS_OFF: "off",
    STATUS_CALL: "call",
    STATUS_AUTHORISED: "authorised",
    STATUS_BUSY: "busy",
    STATUS_PEOT: "end of transaction (PEOT)",
    STATUS_FEOT: "end of transaction (FEOT)",
    STATUS_STOPPED: "stopped",
    STATUS_SEND_DATA: "ready to receive data",
}
#: Status → nozzle state. 8: the FCC authorises only after a lift, so an
#: authorised pump has its nozzle out (lischn001.c:770); C (stopped by the
#: console or an error) needs attention: abnormal (the FCC shows it idle,
#: lischn001.c:795-798). 0 and D say nothing about the nozzle: absent.
STATUS_STATE: dict[int, NozzleState] = {
    STATUS_OFF: NozzleState.IDLE,
    STATUS_CALL: NozzleState.LIFTED,
    STATUS_AUTHORISED: NozzleState.LIFTED,
    STATUS_BUSY: NozzleState.FUELLING,
    STATUS_PEOT: NozzleState.IDLE,
    STATUS_FEOT: NozzleState.IDLE,
    STATUS_STOPPED: NozzleState.ABNORMAL,
}

#: What answers each command: one status byte (0; D to 2), a data frame
#: (4, 5), the running display's data words (6). 1, 3 and FC get no answer
#: (lischn001.c:1776, 1827: ``wantLen = 0``).
STATUS_REPLY = frozenset({CMD_STATUS, CMD_DATA_NEXT})
FRAME_REPLY = frozenset({CMD_TRANSACTION, CMD_TOTALS})
ANSWERED = STATUS_REPLY | FRAME_REPLY | {CMD_RUNNING}

#: A byte below this is a command (high nibble 0–6); from 0x70 on it is a
#: status (7–D), a data word (E) or a control word (F).
COMMAND_LIMIT = 0x70


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


def is_command(byte: int) -> bool:
    """A byte a master sends as a command: ``0x00``–``0x6F`` or ``FC``."""
    return byte < COMMAND_LIMIT or byte == ALL_STOP
