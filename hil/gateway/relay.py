"""One guest connection to a host loopback port: QEMU's ``guestfwd=…-cmd:`` runs
this once per connection the guest opens, with the connection on stdin/stdout.

(The ``guestfwd=…-tcp:host:port`` form connects once when QEMU starts and
never again: an MQTT client that reconnects would find nothing.) Stdlib only.

    python3 relay.py 127.0.0.1 PORT
"""

from __future__ import annotations

import os
import selectors
import socket
import sys

#: Read size: an MQTT batch is a few KiB.
CHUNK = 65536


def main() -> int:
    host, port = sys.argv[1], int(sys.argv[2])
    try:
        sock = socket.create_connection((host, port), timeout=10)
    except OSError:
        return 1
    sock.settimeout(None)  # readiness from select; a send may block, both ends are local
    stdin, stdout = sys.stdin.fileno(), sys.stdout.fileno()
    sel = selectors.DefaultSelector()
    sel.register(stdin, selectors.EVENT_READ, "guest")
    sel.register(sock, selectors.EVENT_READ, "host")
    while True:
        for key, _ in sel.select():
            try:
                if key.data == "guest":
                    data = os.read(stdin, CHUNK)
                    if not data:
                        return 0
                    sock.sendall(data)
                else:
                    data = sock.recv(CHUNK)
                    if not data:
                        return 0
                    _write_all(stdout, data)
            except OSError:
                return 0


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


if __name__ == "__main__":
    raise SystemExit(main())
