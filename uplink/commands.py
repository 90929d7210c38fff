"""Platform commands (``down/cmd``): check every one before anything acts on it.

platform-interface.md "Commands"; SPEC D8 (remote configuration/upgrade makes
a forged command the most dangerous input), D9 (SM2). The order of checks
is cheapest first, so a flood of forgeries costs little:

1. size (:data:`MAX_COMMAND_BYTES`) — ``TOO_LARGE``;
2. envelope: SM4-GCM tag under a current kid, ``dev`` equal to the topic's
   — ``BAD_ENVELOPE`` / ``WRONG_DEVICE``. Anyone who can publish on the
   topic can fail these two, so their refusals are answered within their
   own small budget (:data:`UNAUTHENTICATED_REPLY_BURST`, then one a
   minute) and beyond it only counted: a reply each would let a flood spend
   our 4G data and the store;
3. rate (:class:`TokenBucket`), charged only by envelopes that
   authenticate, so junk on the topic never uses up a valid command's
   budget — over it the message is dropped and counted, with no reply;
4. ``type`` ``cmd`` — ``BAD_ENVELOPE``; the body parses (strict JSON) and
   has a canonical form: no float, no lone surrogate, at most
   :data:`~uplink.command_body.MAX_BODY_DEPTH` deep — ``BAD_REQUEST`` naming what and where
   (``float at $.args.n``);
5. body shape — ``BAD_REQUEST``;
6. SM2 signature over the canonical JSON without ``sig`` (run in a thread:
   pure-Python SM2 verify takes ~20 ms on a desktop, far more on the
   gateway, and must not stall the poll loop) — ``BAD_SIGNATURE``;
7. ``dev`` in the body, when present — ``WRONG_DEVICE``;
8. time window with :data:`CLOCK_SKEW_MS` allowance — ``EXPIRED``,
   ``NOT_YET_VALID``; lifetime at most :data:`MAX_LIFETIME_MS` (bounds the
   replay log) — ``BAD_REQUEST``;
9. replay: the id is recorded (committed) *before* the handler runs, so a
   command runs at most once even across a crash — ``REPLAYED``;
10. dispatch by name — ``UNKNOWN_COMMAND``; the handler's
    :class:`CommandError` code, or ``INTERNAL``.

Any other exception, in a handler or in the checks (the replay log's disk
full, a bug), is logged with its traceback, counted as ``INTERNAL`` and
answered with an ``INTERNAL`` reply: :meth:`CommandProcessor.handle` never
raises, and the uplink stays up. Every reply is canonical JSON (a result
that is not becomes an ``INTERNAL`` reply), so storing it cannot fail.

Every refusal is counted in :attr:`CommandProcessor.counters`, reported to
``on_refused`` (the daemon logs them a few lines a minute,
collector/logs.py) and, unless said otherwise above, answered with a reply
body ``{"id", "ok": false, "error": {"code", "message"}}``; ``id`` is null
when the command's id could not be read.
"""

from __future__ import annotations

import asyncio
import contextvars
import sqlite3
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from config.filemodes import create_private
from uplink.command_body import bounded, not_canonical, printable, valid_unicode
from uplink.crypto import sm2_verify
from uplink.envelope import EnvelopeError, canonical_json, open_envelope

#: A command is a small JSON object; the largest (``config.set`` with a patch)
#: fits in a few KiB. 16 KiB bounds the JSON parse and SM4 work per message.
MAX_COMMAND_BYTES = 16 * 1024

#: Device and platform clocks may differ until ``time.sync``: 5 minutes is the
#: allowance for "issued in the future" and "just expired".
CLOCK_SKEW_MS = 5 * 60 * 1000

#: Longest accepted lifetime (expires_at - issued_at). Replay ids are kept
#: until expires_at + skew, so this bounds how long the replay log holds one.
MAX_LIFETIME_MS = 7 * 24 * 3600 * 1000

#: SM2 verifications per second on average, and the burst: a legitimate
#: platform sends a few commands a day; at 2/s a flood costs at most 2
#: verifications' CPU per second (one SM2 verify per 0.5 s of one core on the
#: gateway's slow ARM would still leave the poll loop most of the core).
VERIFY_RATE_PER_S = 2.0
VERIFY_BURST = 5

#: Refusals of envelopes that do not authenticate (too large, not an
#: envelope, a kid we do not hold, a bad tag, another device's) answered: a
#: burst, then one a minute. The platform that holds the key learns why its
#: first ones failed; a flood costs at most ~1 450 stored replies a day.
UNAUTHENTICATED_REPLY_BURST = 5
UNAUTHENTICATED_REPLY_RATE_PER_S = 1 / 60

#: Envelope errors :func:`open_envelope` raises only after the tag verified:
#: the sender holds the key, so these are answered and charge the rate.
AUTHENTICATED_ENVELOPE_ERRORS = frozenset({"bad_zip", "bad_body"})

#: Longest command id kept (a uuid is 36 characters).
MAX_ID_CHARS = 64

OK = "OK"
UNANSWERED = "UNANSWERED"
TOO_LARGE = "TOO_LARGE"
RATE_LIMITED = "RATE_LIMITED"
BAD_ENVELOPE = "BAD_ENVELOPE"
BAD_REQUEST = "BAD_REQUEST"
BAD_SIGNATURE = "BAD_SIGNATURE"
WRONG_DEVICE = "WRONG_DEVICE"
EXPIRED = "EXPIRED"
NOT_YET_VALID = "NOT_YET_VALID"
REPLAYED = "REPLAYED"
UNKNOWN_COMMAND = "UNKNOWN_COMMAND"
INTERNAL = "INTERNAL"

log = structlog.get_logger("uplink.commands")

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]

#: ``on_refused(code, command_id, message, answered)``: every refusal.
RefusalHook = Callable[[str, str | None, str, bool], None]

#: The id of the command whose handler runs, for a handler that replies again
#: later under the same id (``ota.upgrade``'s progress); tasks it starts inherit it.
current_command_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "current_command_id", default=None
)


class CommandError(Exception):
    """A refusal: ``code`` (one of the constants above, or a handler's own) and a message."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class TokenBucket:
    """``rate`` tokens per second up to ``burst``; :meth:`take` is False when empty."""

    def __init__(
        self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate, self.burst, self._clock = rate, float(burst), clock
        self._tokens, self._at = float(burst), clock()

    def take(self) -> bool:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True


class ReplayLog:
    """Seen command ids in their own small SQLite file, kept until expiry + skew.

    Separate from the order store: losing it loses no data, and it stays
    bounded (ids older than their expiry cannot be replayed anyway: the
    expiry check refuses them first).
    """

    def __init__(self, path: Path) -> None:
        create_private(path)  # owner only whatever the umask (and its -wal / -shm alike)
        self._db = sqlite3.connect(path, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS seen (id TEXT PRIMARY KEY, keep_until_ms INTEGER NOT NULL)"
        )

    def close(self) -> None:
        self._db.close()

    def remember(self, command_id: str, keep_until_ms: int, now_ms: int) -> bool:
        """Record an id; False when it was already there (a replay)."""
        self._db.execute("DELETE FROM seen WHERE keep_until_ms < ?", (now_ms,))
        cur = self._db.execute(
            "INSERT OR IGNORE INTO seen (id, keep_until_ms) VALUES (?, ?)",
            (command_id, keep_until_ms),
        )
        return cur.rowcount == 1

    def __len__(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM seen").fetchone()[0])


def signed_bytes(body: Mapping[str, Any]) -> bytes:
    """What the platform signs: canonical JSON of the body without ``sig``."""
    return canonical_json({k: v for k, v in body.items() if k != "sig"})


def reply_body(
    command_id: str | None, result: dict[str, Any] | None, error: CommandError | None
) -> dict[str, Any]:
    """The ``reply`` record (platform-interface.md): result on success, error otherwise."""
    if error is None:
        return {"id": command_id, "ok": True, "result": result or {}}
    return {"id": command_id, "ok": False, "error": {"code": error.code, "message": str(error)}}


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(kw_only=True, eq=False, repr=False)
class CommandProcessor:
    """Checks and runs commands; :meth:`register` is where new commands plug in.

    ``keys`` is the live kid → SM4 key mapping (the same object key rotation
    updates). ``clock_ms`` is wall-clock milliseconds (expiry is wall time).
    ``bucket`` limits authenticated commands, ``unauthenticated_replies``
    the replies to envelopes that do not authenticate.
    """

    device_id: str
    platform_public: str
    keys: Mapping[str, bytes]
    replay: ReplayLog
    clock_ms: Callable[[], int] = _wall_ms
    bucket: TokenBucket = field(
        default_factory=lambda: TokenBucket(VERIFY_RATE_PER_S, VERIFY_BURST)
    )
    unauthenticated_replies: TokenBucket = field(
        default_factory=lambda: TokenBucket(
            UNAUTHENTICATED_REPLY_RATE_PER_S, UNAUTHENTICATED_REPLY_BURST
        )
    )
    on_refused: RefusalHook | None = None
    handlers: dict[str, Handler] = field(init=False, default_factory=dict)
    #: Commands by outcome: ``OK`` or the refusal's code; ``UNANSWERED``
    #: counts the refusals that got no reply (rate, unauthenticated budget).
    counters: Counter[str] = field(init=False, default_factory=Counter)

    def register(self, name: str, handler: Handler) -> None:
        """Add a command (e.g. ``orders.resend``, ``config.set``, ``ota.upgrade``)."""
        if name in self.handlers:
            raise ValueError(f"command {name!r} registered twice")
        self.handlers[name] = handler

    async def handle(self, payload: bytes) -> dict[str, Any] | None:
        """The reply body for one ``down/cmd`` payload, or None when dropped
        unanswered (over the rate, or past the unauthenticated reply budget)."""
        try:
            body = self._authenticate(payload)
        except CommandError as exc:
            answered = self.unauthenticated_replies.take()
            self._refused(exc.code, None, str(exc), answered)
            return reply_body(None, None, exc) if answered else None
        if not self.bucket.take():
            self._refused(RATE_LIMITED, None, "over the command rate", False)
            return None
        command_id: str | None = None
        try:
            if isinstance(body, CommandError):
                raise body
            command_id = _reply_id(body)
            signed = _signed_bytes_or_refuse(body)
            result = await self._checked_run(body, signed)
            reply = reply_body(command_id, result, None)
            try:
                canonical_json(reply)  # what storing it does: it must not fail there
            except (TypeError, ValueError, RecursionError) as exc:
                why = f"it ran, but its result is not canonical JSON: {exc}"
                raise CommandError(INTERNAL, bounded(why)) from None
        except CommandError as exc:
            message = printable(str(exc))
            self._refused(exc.code, command_id, message, True)
            return reply_body(command_id, None, CommandError(exc.code, message))
        except Exception as exc:
            # A failure in the checks themselves (the replay log's disk, a bug):
            # the platform still learns the command did not run, and why.
            log.exception("command_check_failed", id=command_id)
            error = CommandError(INTERNAL, f"command not run: {type(exc).__name__}")
            self._refused(INTERNAL, command_id, str(error), True)
            return reply_body(command_id, None, error)
        self.counters[OK] += 1
        return reply

    def _refused(self, code: str, command_id: str | None, message: str, answered: bool) -> None:
        self.counters[code] += 1
        if not answered:
            self.counters[UNANSWERED] += 1
        if self.on_refused is not None:
            self.on_refused(code, command_id, message, answered)

    def _authenticate(self, payload: bytes) -> dict[str, Any] | CommandError:
        """The body of an envelope that authenticates, or the refusal of its
        unreadable body (the sender holds the key: it is answered). Raises
        :class:`CommandError` when the envelope does not authenticate."""
        if len(payload) > MAX_COMMAND_BYTES:
            raise CommandError(TOO_LARGE, f"{len(payload)} bytes > {MAX_COMMAND_BYTES}")
        try:
            opened = open_envelope(payload, self.keys, topic_dev=self.device_id)
        except EnvelopeError as exc:
            if exc.code in AUTHENTICATED_ENVELOPE_ERRORS:
                return CommandError(BAD_REQUEST, bounded(f"{exc.code}: {exc}"))
            code = WRONG_DEVICE if exc.code == "dev_mismatch" else BAD_ENVELOPE
            raise CommandError(code, f"envelope refused: {exc.code}") from None
        if opened.type != "cmd":
            return CommandError(BAD_ENVELOPE, bounded(f"envelope type {opened.type!r} is not cmd"))
        return opened.body

    async def _checked_run(self, body: dict[str, Any], signed: bytes) -> dict[str, Any]:
        """Checks 5-10 of a canonical body; the handler's result."""
        name, args, expires_at = self._check_shape(body)
        command_id: str = body["id"]
        loop = asyncio.get_running_loop()
        valid = await loop.run_in_executor(
            None, sm2_verify, self.platform_public, body["sig"], signed
        )
        if not valid:
            raise CommandError(BAD_SIGNATURE, "SM2 signature does not verify")
        if "dev" in body and body["dev"] != self.device_id:
            raise CommandError(WRONG_DEVICE, "command is for another device")
        self._check_time(body["issued_at"], expires_at)
        now = self.clock_ms()
        if not self.replay.remember(command_id, expires_at + CLOCK_SKEW_MS, now):
            raise CommandError(REPLAYED, f"command id {command_id} already seen")
        handler = self.handlers.get(name)
        if handler is None:
            raise CommandError(UNKNOWN_COMMAND, f"no command named {name!r}")
        token = current_command_id.set(command_id)
        try:
            return await handler(args)
        except CommandError:
            raise
        except Exception as exc:  # a handler bug is a reply, never a dead uplink
            log.exception("command_handler_failed", id=command_id, name=name)
            raise CommandError(INTERNAL, f"{name} failed: {type(exc).__name__}") from None
        finally:
            current_command_id.reset(token)

    @staticmethod
    def _check_shape(body: dict[str, Any]) -> tuple[str, dict[str, Any], int]:
        def need(field: str, kind: type | tuple[type, ...]) -> Any:
            value = body.get(field)
            if not isinstance(value, kind) or isinstance(value, bool):
                raise CommandError(BAD_REQUEST, f"{field} missing or of the wrong type")
            return value

        command_id = need("id", str)
        if not 0 < len(command_id) <= MAX_ID_CHARS:
            raise CommandError(BAD_REQUEST, f"id must be 1-{MAX_ID_CHARS} characters")
        name, args = need("name", str), body.get("args", {})
        if not isinstance(args, dict):
            raise CommandError(BAD_REQUEST, "args must be an object")
        need("issued_at", int)
        need("sig", str)
        return name, args, need("expires_at", int)

    def _check_time(self, issued_at: int, expires_at: int) -> None:
        now = self.clock_ms()
        if expires_at - issued_at > MAX_LIFETIME_MS or expires_at < issued_at:
            raise CommandError(BAD_REQUEST, "expires_at must be within 7 days after issued_at")
        if now > expires_at + CLOCK_SKEW_MS:
            raise CommandError(EXPIRED, f"expired {now - expires_at} ms ago")
        if issued_at > now + CLOCK_SKEW_MS:
            raise CommandError(NOT_YET_VALID, f"issued {issued_at - now} ms in the future")


def _reply_id(body: Mapping[str, Any]) -> str | None:
    """The body's ``id`` when a reply can carry it: a string of 1 to
    :data:`MAX_ID_CHARS` characters that is valid Unicode."""
    raw = body.get("id")
    if not isinstance(raw, str) or not 0 < len(raw) <= MAX_ID_CHARS:
        return None
    return raw if valid_unicode(raw) else None


def _signed_bytes_or_refuse(body: dict[str, Any]) -> bytes:
    """What the signature covers; ``BAD_REQUEST`` naming why when the body
    has no canonical JSON (a float, a lone surrogate, absurd nesting)."""
    why = not_canonical(body)
    if why is None:
        try:
            return signed_bytes(body)
        except (TypeError, ValueError, RecursionError) as exc:
            why = str(exc)
    raise CommandError(BAD_REQUEST, bounded(f"body is not canonical JSON: {why}"))
