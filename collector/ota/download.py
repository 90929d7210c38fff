"""Download a bundle over HTTP with resume, checking size and SM3 as it streams.

Blocking code: runs in a worker thread (collector/ota/upgrade.py), never on
the event loop. Bounded in every direction: never more than ``size`` bytes
are read or written (a server that sends more is refused at the first extra
byte), every socket read has a timeout, the whole download a deadline, and
a dropped connection is resumed (``Range: bytes=N-``) at most
:data:`MAX_RESUMES` times with backoff. The partial file is
``staging/<sm3>.part``: a restart (or a SIGKILL) resumes it, and bytes of
another bundle can never be resumed into this one.
"""

from __future__ import annotations

import http.client
import re
import time
import urllib.error
import urllib.request
from pathlib import Path

from collector.ota.bundle import CHUNK_BYTES, BundleError
from collector.retry import Retry
from config.atomic import replace_durably
from records.sm3 import Sm3Stream

#: Resumes after a dropped connection. 4G links drop; 8 resumes with backoff
#: up to 30 s ride out a few minutes of bad coverage, then the platform may
#: send the command again (the partial file is kept and resumed).
MAX_RESUMES = 8
RESUME_BACKOFF_MIN_S, RESUME_BACKOFF_MAX_S = 0.5, 30.0

#: A socket read that sees nothing for this long counts as a dropped connection.
SOCKET_TIMEOUT_S = 30.0

#: HTTP statuses worth a retry (the server or a proxy is busy); any other
#: error status will not change by asking again.
RETRY_HTTP = frozenset({408, 429, 500, 502, 503, 504})

_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


def _start_hash(part: Path, size: int) -> tuple[Sm3Stream, int]:
    """The SM3 state over the bytes already in ``part`` (truncated to ``size``)."""
    digest = Sm3Stream()
    have = 0
    if part.exists():
        if part.stat().st_size > size:
            part.unlink()
            return digest, 0
        with open(part, "rb") as f:
            while chunk := f.read(CHUNK_BYTES):
                digest.update(chunk)
                have += len(chunk)
    return digest, have


def download(
    url: str,
    size: int,
    sm3_hex: str,
    staging: Path,
    deadline_s: float,
) -> Path:
    """The verified bundle file in ``staging``; raises :class:`BundleError`.

    Codes: ``BUNDLE_TOO_LARGE`` (the server offers or sends more than
    ``size``), ``BUNDLE_TRUNCATED`` (it offers less), ``DIGEST_MISMATCH``
    (all ``size`` bytes arrived but their SM3 differs), ``DOWNLOAD_FAILED``
    (HTTP errors, too many drops, past the deadline).
    """
    staging.mkdir(parents=True, exist_ok=True)
    part = staging / f"{sm3_hex}.part"
    digest, have = _start_hash(part, size)
    give_up = time.monotonic() + deadline_s
    resumes = 0
    retry = Retry(RESUME_BACKOFF_MIN_S, RESUME_BACKOFF_MAX_S)
    while have < size:
        if time.monotonic() > give_up:
            raise BundleError("DOWNLOAD_FAILED", f"not done within {deadline_s:.0f} s")
        try:
            digest, have = _fetch(url, size, part, digest, have, give_up)
        except (OSError, http.client.HTTPException) as exc:  # URLError, timeouts, drops
            if isinstance(exc, urllib.error.HTTPError) and exc.code not in RETRY_HTTP:
                raise BundleError("DOWNLOAD_FAILED", f"HTTP {exc.code} for the bundle") from None
            resumes += 1
            if resumes > MAX_RESUMES:
                raise BundleError(
                    "DOWNLOAD_FAILED", f"{MAX_RESUMES} resumes, last: {exc}"
                ) from None
            time.sleep(retry.next_delay())
            # The file is the truth: hash what it holds again and resume after it.
            digest, have = _start_hash(part, size)
    if digest.hexdigest() != sm3_hex.lower():
        part.unlink()
        raise BundleError("DIGEST_MISMATCH", "the bundle's SM3 differs from the command's")
    done = staging / f"{sm3_hex}.bundle"
    replace_durably(part, done)  # verified: on flash before its name says "whole"
    return done


def _fetch(
    url: str,
    size: int,
    part: Path,
    digest: Sm3Stream,
    have: int,
    give_up: float,
) -> tuple[Sm3Stream, int]:
    """One request from byte ``have``; returns the new state (raises on a drop)."""
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    with urllib.request.urlopen(request, timeout=SOCKET_TIMEOUT_S) as response:
        total = _offered_total(response.status, response.headers, have)
        if response.status == 200 and have:
            # The server ignored the Range: start over from the first byte.
            digest, have = Sm3Stream(), 0
            part.unlink(missing_ok=True)
        if total is not None and total > size:
            _refuse(part, "BUNDLE_TOO_LARGE", f"the server offers {total} bytes > {size}")
        if total is not None and total < size:
            _refuse(part, "BUNDLE_TRUNCATED", f"the server offers {total} bytes < {size}")
        with open(part, "ab") as out:
            while True:
                if time.monotonic() > give_up:
                    raise TimeoutError("download deadline")
                # Ask for one byte more than we still need: a server that
                # sends it has sent more than the signed size.
                chunk = response.read(min(CHUNK_BYTES, size - have + 1))
                if not chunk:
                    break
                if have + len(chunk) > size:
                    out.close()
                    _refuse(part, "BUNDLE_TOO_LARGE", f"the server sent more than {size} bytes")
                out.write(chunk)
                digest.update(chunk)
                have += len(chunk)
            out.flush()
    if have < size:
        if total is None:
            _refuse(part, "BUNDLE_TRUNCATED", f"the response ended at {have} of {size} bytes")
        raise ConnectionError(f"connection ended at {have} of {size} bytes")
    return digest, have


def _offered_total(status: int, headers: object, have: int) -> int | None:
    """The full length the server says the file has, when it says."""
    get = getattr(headers, "get", lambda name, default=None: default)
    if status == 206:
        found = _CONTENT_RANGE.fullmatch(str(get("Content-Range", "")).strip())
        if found is None or int(found.group(1)) != have:
            raise BundleError("DOWNLOAD_FAILED", "the server answered another range")
        return None if found.group(3) == "*" else int(found.group(3))
    length = get("Content-Length")
    return int(length) if length is not None and str(length).isdigit() else None


def _refuse(part: Path, code: str, message: str) -> None:
    part.unlink(missing_ok=True)
    raise BundleError(code, message)
