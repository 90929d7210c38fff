"""``python -m hil.release_server --dir DIR --port N [--cut-once BYTES]``

The platform's release download server, for the OTA tests: stdlib
``http.server`` on loopback serving the files of ``DIR`` with single-range
``Range: bytes=N-`` / ``bytes=N-M`` support (206 + ``Content-Range``; 416
past the end). ``--cut-once BYTES``: the first full-file GET of each file
sends its headers (the whole ``Content-Length``) but only ``BYTES`` of the
body, then drops the connection — a 4G link lost mid-download, for the
resume test. ``--no-range``: every GET gets the whole file (200), as from a
server or proxy that ignores Range. One JSON line per request on stdout: ``{"path", "range",
"status", "sent"}``; ``{"listening": port}`` once it serves.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

_RANGE = re.compile(r"bytes=(\d+)-(\d*)")
CHUNK = 64 * 1024


class ReleaseServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self, port: int, directory: Path, cut_once: int | None = None, ranges: bool = True
    ) -> None:
        super().__init__(("127.0.0.1", port), Handler)
        self.directory = directory
        self.cut_once = cut_once
        self.ranges = ranges  # False: a server (or proxy) that ignores Range
        self.cut_done: set[str] = set()
        self.lock = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    server: ReleaseServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass  # one JSON line per request instead (_emit)

    def _emit(self, status: int, sent: int, rng: str | None) -> None:
        line = {"path": self.path, "range": rng, "status": status, "sent": sent}
        with self.server.lock:
            print(json.dumps(line), flush=True)

    def do_GET(self) -> None:
        name = self.path.lstrip("/")
        path = self.server.directory / name
        rng = self.headers.get("Range") if self.server.ranges else None
        if "/" in name or not path.is_file():
            self.send_error(404)
            self._emit(404, 0, rng)
            return
        size = path.stat().st_size
        start, end, status = 0, size - 1, 200
        if rng is not None:
            found = _RANGE.fullmatch(rng.strip())
            if found is None or int(found.group(1)) >= size:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                self._emit(416, 0, rng)
                return
            start = int(found.group(1))
            end = min(int(found.group(2)), size - 1) if found.group(2) else size - 1
            status = 206
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(end - start + 1))
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.end_headers()
        limit = end - start + 1
        with self.server.lock:
            if (
                self.server.cut_once is not None
                and status == 200
                and name not in self.server.cut_done
            ):
                self.server.cut_done.add(name)
                limit = min(limit, self.server.cut_once)
        sent = 0
        with open(path, "rb") as f:
            f.seek(start)
            while sent < limit:
                chunk = f.read(min(CHUNK, limit - sent))
                if not chunk:
                    break
                try:
                    self.wfile.write(chunk)
                except OSError:
                    break
                sent += len(chunk)
        self._emit(status, sent, rng)
        if sent < end - start + 1:
            self.close_connection = True  # the cut: the client sees a short body


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hil.release_server", description=__doc__)
    parser.add_argument("--dir", required=True, type=Path)
    parser.add_argument("--port", required=True, type=int)
    parser.add_argument("--cut-once", type=int, default=None, metavar="BYTES")
    parser.add_argument("--no-range", action="store_true", help="ignore Range (answer 200)")
    args = parser.parse_args(argv)
    server = ReleaseServer(args.port, args.dir, args.cut_once, ranges=not args.no_range)
    print(json.dumps({"listening": server.server_address[1]}), flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
