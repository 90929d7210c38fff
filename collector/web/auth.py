"""Login for the local web page: password hash, per-address limits, sessions, CSRF.

* The password is set at install (``forecourt web passwd``) — there is no
  default. It is stored as a salted scrypt hash (stdlib ``hashlib.scrypt``)
  in a file of mode 0600; without that file no login is possible.
* One password check at a time (:class:`PasswordChecks`): scrypt holds
  :data:`SCRYPT_MEMORY` while it runs, so concurrent checks would multiply
  it; a few wait their turn, the rest are refused (the page answers 429).
* Wrong passwords are counted per source address (:class:`LoginGuard`):
  :data:`FREE_FAILURES` typos, then the address waits :data:`LOCK_BASE_S`,
  doubling with each further failure up to :data:`LOCK_MAX_S`. Another
  address — the technician's phone — is never locked by them.
* A session is a random token in an HttpOnly, SameSite=Strict cookie; it
  ends after :data:`SESSION_IDLE_S` without a request and
  :data:`SESSION_MAX_S` after the login, whichever comes first; each
  session carries its own CSRF token that every form must send back.

Pure Python and no I/O but the hash file: tested without a browser.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from config.atomic import write_atomically

#: scrypt cost n=2**12, r=8, p=4: the CPU of the classic n=2**14, r=8, p=1
#: (≈ 0.1–0.2 s on the x86 development VM, more on the gateway) with a
#: quarter of its memory — 128·r·n = 4 MiB instead of 16 MiB, which a
#: 64–128 MB gateway under a hostile client cannot spare (docs/security.md).
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**12, 8, 4
SCRYPT_MEMORY = 128 * SCRYPT_R * SCRYPT_N
#: A stored hash asking for more than this is not computed: a hash file
#: written with other parameters must not take the daemon past its budget.
SCRYPT_MAX_MEMORY = 2 * SCRYPT_MEMORY
SALT_BYTES = 16
HASH_BYTES = 32
#: Wrong passwords from one address before it must wait (typos).
FREE_FAILURES = 3
#: The first wait, doubled with each failure after it, capped.
LOCK_BASE_S, LOCK_MAX_S = 30.0, 900.0
#: An address's failures are forgotten this long after its last one.
FORGET_S = 3600.0
#: Addresses whose failures are remembered; past this the one whose last
#: failure is oldest is forgotten (bounded memory; a /24 LAN has 254).
MAX_ADDRESSES = 256
#: Password checks waiting for the one running; more are refused at once.
MAX_WAITING_CHECKS = 4
#: A session ends after this long without a request (a technician's visit) …
SESSION_IDLE_S = 1800.0
#: … and this long after its login, however busy (a working day).
SESSION_MAX_S = 8 * 3600.0
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


def _scrypt_params(stored: str) -> tuple[int, int, int, bytes, bytes] | None:
    """(n, r, p, salt, digest) of a stored hash; None when malformed or too costly."""
    try:
        scheme, n, r, p, salt, digest = stored.strip().split("$")
        params = int(n), int(r), int(p), bytes.fromhex(salt), bytes.fromhex(digest)
    except ValueError:
        return None
    n_, r_, p_ = params[:3]
    if scheme != "scrypt" or min(n_, r_, p_) < 1 or 128 * r_ * (n_ + p_) > SCRYPT_MAX_MEMORY:
        return None
    return params


def hash_is_usable(stored: str) -> bool:
    """False for a hash this page will not compute (malformed, or parameters
    needing more than :data:`SCRYPT_MAX_MEMORY`): set the password again."""
    return _scrypt_params(stored) is not None


def verify_password(password: str, stored: str) -> bool:
    params = _scrypt_params(stored)
    if params is None:
        return False
    n, r, p, salt, digest = params
    try:
        got = hashlib.scrypt(
            password.encode(errors="surrogatepass"),
            salt=salt,
            n=n,
            r=r,
            p=p,
            dklen=len(digest),
            maxmem=SCRYPT_MAX_MEMORY + 1024 * 1024,
        )
    except ValueError:  # n not a power of 2, an empty digest …
        return False
    return hmac.compare_digest(got, digest)


def write_hash_file(path: Path, password: str, owner: tuple[int, int] | None = None) -> None:
    """Write the hash atomically (config/atomic.py), mode 0600 whatever it was;
    ``owner``: who it is given to when root writes it (the service user,
    config/filemodes.py), else the replaced file's owner."""
    if len(password) < MIN_PASSWORD_CHARS:
        raise ValueError(f"a password needs at least {MIN_PASSWORD_CHARS} characters")
    path.parent.mkdir(parents=True, exist_ok=True)
    hashed = (hash_password(password) + "\n").encode()
    write_atomically(path, hashed, mode=HASH_FILE_MODE, owner=owner)


def read_hash_file(path: Path) -> str | None:
    try:
        return path.read_text().strip() or None
    except OSError:
        return None


class LoginGuard:
    """Wrong passwords per source address, with a growing wait (module docstring)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        #: address → (failures, time of the last one)
        self._failures: dict[str, tuple[int, float]] = {}

    def _entry(self, address: str) -> tuple[int, float]:
        failures, last = self._failures.get(address, (0, 0.0))
        if failures and self.clock() - last > FORGET_S:
            del self._failures[address]
            return 0, 0.0
        return failures, last

    def locked_for(self, address: str) -> float:
        """Seconds ``address`` must wait before its next attempt (0: go ahead)."""
        failures, last = self._entry(address)
        if failures < FREE_FAILURES:
            return 0.0
        wait = min(LOCK_MAX_S, LOCK_BASE_S * 2 ** min(failures - FREE_FAILURES, 16))
        return max(0.0, last + wait - self.clock())

    def attempt(self, address: str, ok: bool) -> bool:
        """Record an attempt from ``address``; True when it logs in. A locked
        address is refused even the right password (else the wait would only
        slow guessing down)."""
        if self.locked_for(address) > 0:
            return False
        if ok:
            self._failures.pop(address, None)
            return True
        failures, _ = self._entry(address)
        if address not in self._failures and len(self._failures) >= MAX_ADDRESSES:
            oldest = min(self._failures, key=lambda a: self._failures[a][1])
            del self._failures[oldest]
        self._failures[address] = (failures + 1, self.clock())
        return False


def _malloc_trim() -> None:
    """Give the scrypt buffer back to the kernel (glibc only; elsewhere nothing).

    After the first 4 MiB block is freed glibc raises its mmap threshold to
    that size, so later blocks come from the heap and stay resident after
    free: +4–5 MiB of RSS for good after the first login, measured.
    """
    global _trim
    if _trim is None:
        import ctypes  # imported by the first login, not by the daemon's start

        try:  # the process's own symbols: the C library it runs on
            _trim = ctypes.CDLL(None).malloc_trim
        except (OSError, AttributeError):
            _trim = False
    if _trim:
        _trim(0)


_trim: Any = None


def _check(password: str, stored: str) -> bool:
    """One check on the worker thread, its memory returned after."""
    try:
        return verify_password(password, stored)
    finally:
        _malloc_trim()


class ChecksBusy(Exception):
    """No password check now: this address has one running, or too many wait."""


class PasswordChecks:
    """One scrypt at a time, on one worker thread; at most
    :data:`MAX_WAITING_CHECKS` waiting, one per address.

    A check whose client goes away keeps its turn until its hash is done
    (the thread cannot be stopped): the slot is released by the hash's end,
    never by the request's, so connecting and hanging up cannot start more.
    """

    def __init__(self) -> None:
        self._executor: Any = None  # a ThreadPoolExecutor from the first check on
        self._addresses: set[str] = set()

    @property
    def pending(self) -> int:
        return len(self._addresses)

    async def verify(self, address: str, password: str, stored: str) -> bool:
        if address in self._addresses or len(self._addresses) > MAX_WAITING_CHECKS:
            raise ChecksBusy
        if self._executor is None:
            from concurrent.futures import ThreadPoolExecutor

            self._executor = ThreadPoolExecutor(1, thread_name_prefix="web-password")
        self._addresses.add(address)
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._executor, _check, password, stored)
        future.add_done_callback(lambda _: self._addresses.discard(address))
        return await asyncio.shield(future)


@dataclass(slots=True)
class Session:
    csrf: str
    seen: float
    created: float


class Sessions:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._by_token: dict[str, Session] = {}

    def create(self) -> str:
        if len(self._by_token) >= MAX_SESSIONS:
            oldest = min(self._by_token, key=lambda t: self._by_token[t].seen)
            del self._by_token[oldest]
        token = secrets.token_urlsafe(32)
        now = self.clock()
        self._by_token[token] = Session(secrets.token_urlsafe(32), now, now)
        return token

    def get(self, token: str | None) -> Session | None:
        session = self._by_token.get(token or "")
        if session is None:
            return None
        now = self.clock()
        if now - session.seen > SESSION_IDLE_S or now - session.created > SESSION_MAX_S:
            del self._by_token[token or ""]
            return None
        session.seen = now
        return session

    def drop(self, token: str | None) -> None:
        self._by_token.pop(token or "", None)

    def __len__(self) -> int:
        return len(self._by_token)

    @staticmethod
    def csrf_ok(session: Session | None, token: str | None) -> bool:
        return (
            session is not None
            and token is not None
            and hmac.compare_digest(session.csrf.encode(), token.encode())
        )
