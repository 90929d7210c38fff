"""Login for the local web page (issue #9): password hash, lockout, sessions, CSRF.

* The password is set at install (``forecourt web passwd``) — there is no
  default. It is stored as a salted scrypt hash (stdlib ``hashlib.scrypt``)
  in a file of mode 0600; without that file no login is possible.
* Three wrong passwords lock the login for a minute (:class:`LoginGuard`),
  whoever sends them: the page is on a station LAN, a lock per client
  address would be trivial to dodge.
* A session is a random token in an HttpOnly, SameSite=Strict cookie; each
  session carries its own CSRF token that every form must send back.

Pure Python and no I/O but the hash file: tested without a browser.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from config.atomic import write_atomically

#: scrypt cost: n=2**14, r=8 takes ~50 ms and 16 MiB on a slow ARM gateway —
#: slow enough against guessing, small enough for 64 MB of RAM.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
SALT_BYTES = 16
HASH_BYTES = 32
#: Wrong passwords in a row that lock the login, and for how long.
MAX_FAILURES, LOCK_S = 3, 60.0
#: A session ends after this long without a request (a technician's visit).
SESSION_IDLE_S = 3600.0
#: Sessions kept at once; the oldest is dropped past this (bounded memory).
MAX_SESSIONS = 16
MIN_PASSWORD_CHARS = 8
#: The hash file: its owner only (a hash is still something to guess against).
HASH_FILE_MODE = 0o600


def hash_password(password: str, salt: bytes | None = None) -> str:
    """``scrypt$N$r$p$salt$hash`` (hex), one line."""
    salt = salt if salt is not None else secrets.token_bytes(SALT_BYTES)
    digest = hashlib.scrypt(
        password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=HASH_BYTES
    )
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${salt.hex()}${digest.hex()}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.strip().split("$")
        if scheme != "scrypt":
            return False
        got = hashlib.scrypt(
            password.encode(),
            salt=bytes.fromhex(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=len(bytes.fromhex(digest)),
        )
    except ValueError:
        return False
    return hmac.compare_digest(got.hex(), digest)


def write_hash_file(path: Path, password: str) -> None:
    """Write the hash atomically (config/atomic.py), mode 0600 whatever it was."""
    if len(password) < MIN_PASSWORD_CHARS:
        raise ValueError(f"a password needs at least {MIN_PASSWORD_CHARS} characters")
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, (hash_password(password) + "\n").encode(), mode=HASH_FILE_MODE)


def read_hash_file(path: Path) -> str | None:
    try:
        return path.read_text().strip() or None
    except OSError:
        return None


class LoginGuard:
    """Counts wrong passwords; :data:`MAX_FAILURES` in a row lock for :data:`LOCK_S`."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.failures = 0
        self.locked_until = 0.0

    def locked_for(self) -> float:
        """Seconds the login stays locked (0 when open)."""
        return max(0.0, self.locked_until - self.clock())

    def attempt(self, ok: bool) -> bool:
        """Record an attempt; True when it logs in. A locked guard refuses even
        the right password (else the lock would only slow guessing down)."""
        if self.locked_for() > 0:
            return False
        if ok:
            self.failures = 0
            return True
        self.failures += 1
        if self.failures >= MAX_FAILURES:
            self.failures = 0
            self.locked_until = self.clock() + LOCK_S
        return False


@dataclass(slots=True)
class Session:
    csrf: str
    seen: float


class Sessions:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._by_token: dict[str, Session] = {}

    def create(self) -> str:
        if len(self._by_token) >= MAX_SESSIONS:
            oldest = min(self._by_token, key=lambda t: self._by_token[t].seen)
            del self._by_token[oldest]
        token = secrets.token_urlsafe(32)
        self._by_token[token] = Session(secrets.token_urlsafe(32), self.clock())
        return token

    def get(self, token: str | None) -> Session | None:
        session = self._by_token.get(token or "")
        if session is None:
            return None
        if self.clock() - session.seen > SESSION_IDLE_S:
            del self._by_token[token or ""]
            return None
        session.seen = self.clock()
        return session

    def drop(self, token: str | None) -> None:
        self._by_token.pop(token or "", None)

    @staticmethod
    def csrf_ok(session: Session | None, token: str | None) -> bool:
        return (
            session is not None
            and token is not None
            and hmac.compare_digest(session.csrf.encode(), token.encode())
        )
