"""The control socket's client: one JSON request, one JSON reply.

The technician CLI (collector/tools/techcli.py) and the self-test
(collector/tools/selftest.py) both ask the running collector through it; the
server side is collector/tools/control.py.
"""

from __future__ import annotations

import json
import socket
from typing import Any

#: A reply larger than this is a bug, not a station: stop reading.
MAX_REPLY = 16 * 1024 * 1024


class Down(Exception):
    """The control socket does not answer."""


def ask(path: str, request: dict[str, Any], timeout: float = 10.0) -> dict[str, Any]:
    """One request over the control socket; raises :class:`Down` when nobody answers."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(path)
            s.sendall(json.dumps(request).encode() + b"\n")
            chunks, size = [], 0
            while chunk := s.recv(65536):
                chunks.append(chunk)
                size += len(chunk)
                if size > MAX_REPLY:
                    raise Down("reply too large")
    except (FileNotFoundError, ConnectionRefusedError) as exc:
        raise Down(f"{path}: {exc.strerror}") from None
    except OSError as exc:
        raise Down(f"{path}: {exc}") from None
    try:
        reply: dict[str, Any] = json.loads(b"".join(chunks))
    except ValueError:
        raise Down(f"{path}: no valid reply") from None
    return reply
