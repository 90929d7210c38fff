"""Web login pieces without a browser: hash, per-address waits, one check at a time, sessions."""

from __future__ import annotations

import asyncio
import stat
from pathlib import Path

import pytest

from collector.web.auth import (
    FREE_FAILURES,
    LOCK_BASE_S,
    LOCK_MAX_S,
    MAX_ADDRESSES,
    MAX_WAITING_CHECKS,
    SCRYPT_MAX_MEMORY,
    SESSION_IDLE_S,
    SESSION_MAX_S,
    ChecksBusy,
    LoginGuard,
    PasswordChecks,
    Sessions,
    hash_is_usable,
    hash_password,
    read_hash_file,
    verify_password,
    write_hash_file,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_hash_is_salted_scrypt_and_verifies() -> None:
    a, b = hash_password("correct horse"), hash_password("correct horse")
    assert a.startswith("scrypt$") and a != b, "a fresh salt every time"
    assert verify_password("correct horse", a) and verify_password("correct horse", b)
    assert not verify_password("correct hors", a)
    assert not verify_password("correct horse", "garbage")
    assert not verify_password("x", "md5$1$2$3$00$00")


def test_hash_file_is_0600_and_atomic(tmp_path: Path) -> None:
    path = tmp_path / "etc" / "web-password"
    assert read_hash_file(path) is None, "no file: no login possible"
    write_hash_file(path, "station-01-pw")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    stored = read_hash_file(path)
    assert stored is not None and verify_password("station-01-pw", stored)
    with pytest.raises(ValueError, match="at least 8"):
        write_hash_file(path, "short")
    assert read_hash_file(path) == stored, "a refused password leaves the file alone"
    assert [p.name for p in path.parent.iterdir()] == ["web-password"], "no temp file left"


def test_an_address_waits_after_three_failures_and_the_wait_grows() -> None:
    clock = Clock()
    guard = LoginGuard(clock)
    for _ in range(FREE_FAILURES - 1):
        assert not guard.attempt("10.0.0.9", False)
    assert guard.locked_for("10.0.0.9") == 0, "typos are free"
    assert not guard.attempt("10.0.0.9", False)
    assert guard.locked_for("10.0.0.9") == LOCK_BASE_S
    assert not guard.attempt("10.0.0.9", True), "locked: the right password is refused too"
    clock.now += LOCK_BASE_S
    assert not guard.attempt("10.0.0.9", False)
    assert guard.locked_for("10.0.0.9") == 2 * LOCK_BASE_S, "each failure doubles the wait"
    for _ in range(20):
        clock.now += LOCK_MAX_S
        guard.attempt("10.0.0.9", False)
    assert guard.locked_for("10.0.0.9") == LOCK_MAX_S, "capped"
    clock.now += LOCK_MAX_S
    assert guard.attempt("10.0.0.9", True), "after the wait the right password logs in"
    assert guard.locked_for("10.0.0.9") == 0


def test_another_address_is_never_locked_by_them() -> None:
    guard = LoginGuard(Clock())
    for _ in range(10):
        guard.attempt("10.0.0.66", False)
    assert guard.locked_for("10.0.0.66") > 0
    assert guard.locked_for("10.0.0.7") == 0
    assert guard.attempt("10.0.0.7", True), "the technician's phone logs in"


def test_success_resets_the_failure_count_and_the_table_is_bounded() -> None:
    clock = Clock()
    guard = LoginGuard(clock)
    guard.attempt("a", False)
    guard.attempt("a", False)
    assert guard.attempt("a", True)
    guard.attempt("a", False)
    guard.attempt("a", False)
    assert guard.locked_for("a") == 0
    for n in range(MAX_ADDRESSES + 50):
        clock.now += 1
        guard.attempt(f"10.1.{n // 250}.{n % 250}", False)
    assert len(guard._failures) == MAX_ADDRESSES


def test_a_hash_too_costly_for_the_gateway_is_never_computed() -> None:
    salt, digest = "00" * 16, "00" * 32
    costly = f"scrypt${2**16}$8$1${salt}${digest}"  # 64 MiB
    assert SCRYPT_MAX_MEMORY < 128 * 8 * 2**16
    assert not hash_is_usable(costly) and not verify_password("x", costly)
    assert hash_is_usable(hash_password("station-01-pw"))
    for malformed in ("", "scrypt$0$8$1$00$00", "scrypt$3$8$1$00$00", f"scrypt$x$8$1${salt}$00"):
        assert not verify_password("x", malformed)


def test_one_check_at_a_time_and_one_per_address() -> None:
    stored = hash_password("station-01-pw")

    async def main() -> list[object]:
        checks = PasswordChecks()
        attempts = [checks.verify("same", "wrong-one", stored) for _ in range(2)]
        attempts += [
            checks.verify(f"10.0.0.{n}", "station-01-pw", stored)
            for n in range(MAX_WAITING_CHECKS + 3)
        ]
        done = await asyncio.gather(*attempts, return_exceptions=True)
        assert checks.pending == 0
        return done

    results = asyncio.run(main())
    assert results[0] is False and isinstance(results[1], ChecksBusy), "one per address"
    ran = [r for r in results[2:] if r is True]
    busy = [r for r in results[2:] if isinstance(r, ChecksBusy)]
    assert len(ran) == MAX_WAITING_CHECKS and len(busy) == 3, results


def test_sessions_expire_and_csrf_is_per_session() -> None:
    clock = Clock()
    sessions = Sessions(clock)
    one, two = sessions.create(), sessions.create()
    s1, s2 = sessions.get(one), sessions.get(two)
    assert s1 is not None and s2 is not None and s1.csrf != s2.csrf
    assert Sessions.csrf_ok(s1, s1.csrf)
    assert not Sessions.csrf_ok(s1, s2.csrf), "another session's token is refused"
    assert not Sessions.csrf_ok(s1, None) and not Sessions.csrf_ok(None, s1.csrf)
    assert sessions.get("forged") is None
    clock.now += SESSION_IDLE_S + 1
    assert sessions.get(one) is None, "an idle session ends"
    sessions.drop(two)
    assert sessions.get(two) is None


def test_a_busy_session_still_ends_at_its_absolute_lifetime() -> None:
    clock = Clock()
    sessions = Sessions(clock)
    token, end = sessions.create(), clock.now + SESSION_MAX_S
    while clock.now + SESSION_IDLE_S / 2 <= end:
        clock.now += SESSION_IDLE_S / 2
        assert sessions.get(token) is not None, "in use: kept"
    clock.now = end + 1  # less than the idle time since the last request
    assert sessions.get(token) is None, "past its absolute lifetime"
