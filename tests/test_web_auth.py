"""Web login pieces without a browser (issue #9): hash, lockout, sessions, CSRF."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from collector.web.auth import (
    LOCK_S,
    SESSION_IDLE_S,
    LoginGuard,
    Sessions,
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


def test_three_failures_lock_for_a_minute_even_the_right_password() -> None:
    clock = Clock()
    guard = LoginGuard(clock)
    assert not guard.attempt(False) and not guard.attempt(False)
    assert guard.locked_for() == 0
    assert not guard.attempt(False)
    assert guard.locked_for() == LOCK_S
    assert not guard.attempt(True), "locked: the right password is refused too"
    clock.now += LOCK_S - 1
    assert not guard.attempt(True)
    clock.now += 1
    assert guard.attempt(True), "a minute later the login is open again"


def test_success_resets_the_failure_count() -> None:
    guard = LoginGuard(Clock())
    guard.attempt(False)
    guard.attempt(False)
    assert guard.attempt(True)
    guard.attempt(False)
    guard.attempt(False)
    assert guard.locked_for() == 0


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
