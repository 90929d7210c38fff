"""Splitting the host's byte stream into commands, sans-IO (3xx manual §5).

A command is ``SOH [security code] function code [data]`` with no
terminator: the console knows a read command is complete when the function
code's six characters (after the six of the security code, when security
is on) have arrived. Our reading for everything else:

- A CR or LF, or a new SOH, ends a command early (hosts often send CR LF;
  the short command is then answered as unknown, or not at all when it
  lacks the security code).
- Bytes after a complete command up to the next SOH (the data field of a
  set command we do not support, CR LF, noise) are ignored.
- ESC (§5) abandons the command being received and is passed on as
  :data:`ABORT` so the I/O layer can drop a response not yet sent.
"""

from __future__ import annotations

#: Yielded for an ESC from the host: stop sending the current response.
ABORT = b"\x1b"

SOH, ESC, CR, LF = 0x01, 0x1B, 0x0D, 0x0A
#: §5: function codes and security codes are six characters each.
FIELD_LEN = 6


class CommandReader:
    """``feed(bytes) -> [command, …]``; a command starts with SOH."""

    def __init__(self, *, security: bool = False) -> None:
        self._need = FIELD_LEN * (2 if security else 1)
        self._buf: bytearray | None = None

    def feed(self, data: bytes) -> list[bytes]:
        out: list[bytes] = []
        for byte in data:
            if byte == SOH:
                if self._buf is not None:
                    out.append(bytes(self._buf))
                self._buf = bytearray(b"\x01")
            elif byte == ESC:
                self._buf = None
                out.append(ABORT)
            elif self._buf is None:
                continue
            elif byte in (CR, LF):
                out.append(bytes(self._buf))
                self._buf = None
            else:
                self._buf.append(byte)
                if len(self._buf) > self._need:
                    out.append(bytes(self._buf))
                    self._buf = None
        return out
