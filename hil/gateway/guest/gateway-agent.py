#!/usr/bin/python3
"""The harness's agent in the test image (hil/gateway/vm.py): no part of the product.

Reads one JSON request per line from a virtio serial port — ``{"id": N,
"cmd": "shell text", "timeout": s}`` — runs it with /bin/sh as root and
answers one JSON line ``{"id": N, "rc": status, "out": "stdout+stderr"}``.
While the host is not connected a read returns end of file: wait and read
again (the port stays open; nothing is lost or answered twice).
"""

import json
import os
import subprocess
import time

PORT = "/dev/virtio-ports/org.forecourt.shell"

while not os.path.exists(PORT):
    time.sleep(0.2)
fd = os.open(PORT, os.O_RDWR)
pending = b""
while True:
    chunk = os.read(fd, 65536)
    if not chunk:
        time.sleep(0.5)
        continue
    pending += chunk
    while b"\n" in pending:
        line, pending = pending.split(b"\n", 1)
        try:
            request = json.loads(line)
        except ValueError:
            continue
        try:
            done = subprocess.run(
                request["cmd"],
                shell=True,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                timeout=request.get("timeout", 600),
            )
            rc, out = done.returncode, done.stdout.decode(errors="replace")
        except subprocess.TimeoutExpired as exc:
            rc, out = 124, f"timed out: {exc}"
        reply = json.dumps({"id": request.get("id"), "rc": rc, "out": out}) + "\n"
        data = reply.encode()
        while data:
            data = data[os.write(fd, data) :]
