"""The first command handlers: ``device.status`` and ``key.rotate``.

Registered on a :class:`uplink.commands.CommandProcessor` by
:func:`register_device_commands`; the lead adds ``orders.resend``,
``config.*`` and ``ota.*`` the same way (``processor.register(name, handler)``).
"""

from __future__ import annotations

import base64
import binascii
import re
import time
from collections.abc import Callable, MutableMapping
from pathlib import Path
from typing import Any

from config.atomic import write_atomically
from uplink.commands import BAD_REQUEST, CommandError, CommandProcessor
from uplink.crypto import KEY_BYTES, AuthenticationFailed, sm2_decrypt
from uplink.keys import redact

#: How long the previous SM4 key stays in the key file after a rotation, so
#: the platform can still send commands sealed under it while it switches and
#: the device can still open them. The device seals only with the new key.
KEY_GRACE_S = 24 * 3600

#: The key file holds every live SM4 key: its owner only (uplink/keys.py
#: refuses one that others can read).
KEY_FILE_MODE = 0o600

_KID = re.compile(r"[A-Za-z0-9._-]{1,64}")


class KeyRing:
    """The live SM4 keys: ``keys`` (kid → key, opened with), ``current`` (sealed with).

    ``keys`` is the mapping the command processor and receivers open with;
    :meth:`rotate` persists the file first (atomic rename, 0600) and only then
    switches, so a crash leaves either the old or the new file, never half.
    """

    def __init__(self, path: Path, keys: MutableMapping[str, bytes], current: str) -> None:
        self.path, self.keys, self.current = path, keys, current
        self.retiring: dict[str, float] = {}

    @property
    def current_key(self) -> bytes:
        return self.keys[self.current]

    def rotate(self, kid: str, key: bytes, now: float | None = None) -> str:
        """Install ``kid`` as the sealing key; returns the previous kid."""
        now = time.time() if now is None else now
        for old, until in list(self.retiring.items()):
            if until < now and old != kid:
                self.keys.pop(old, None)
                del self.retiring[old]
        previous = self.current
        new_keys = dict(self.keys)
        new_keys[kid] = key
        self._write(new_keys, kid)
        self.keys[kid] = key
        self.current = kid
        if previous != kid:
            self.retiring[previous] = now + KEY_GRACE_S
        return previous

    @staticmethod
    def current_path(path: Path) -> Path:
        """``<key file>.current``: the kid sealed with since the last rotation.

        The config's ``uplink.kid`` names the first key; after a rotation this
        file (written after the key file, both atomically) wins at start-up.
        """
        return path.with_name(path.name + ".current")

    @classmethod
    def current_kid(cls, path: Path, default: str, keys: MutableMapping[str, bytes]) -> str:
        try:
            kid = cls.current_path(path).read_text().strip()
        except OSError:
            return default
        return kid if kid in keys else default

    def _write(self, keys: dict[str, bytes], current: str) -> None:
        """The key file (0600 whatever it was: it holds the keys), then the
        marker: each atomic, so the marker never names a kid the file lacks."""
        text = "".join(f'{k} = "{v.hex()}"\n' for k, v in keys.items())
        write_atomically(self.path, text.encode("ascii"), mode=KEY_FILE_MODE)
        write_atomically(self.current_path(self.path), f"{current}\n".encode("ascii"))


def register_device_commands(
    processor: CommandProcessor,
    *,
    status: Callable[[], dict[str, Any]],
    ring: KeyRing,
    device_private: str,
) -> None:
    """``device.status`` (heartbeat body from ``status`` + command counters) and ``key.rotate``."""

    async def device_status(args: dict[str, Any]) -> dict[str, Any]:
        # The heartbeat body plus the command counters (refusals by code).
        return {**status(), "commands": dict(processor.counters)}

    async def key_rotate(args: dict[str, Any]) -> dict[str, Any]:
        kid, wrapped = args.get("kid"), args.get("key")
        if not isinstance(kid, str) or not _KID.fullmatch(kid):
            raise CommandError(BAD_REQUEST, "kid must be 1-64 of A-Z a-z 0-9 . _ -")
        if not isinstance(wrapped, str):
            raise CommandError(BAD_REQUEST, "key must be base64 of the SM2 ciphertext")
        try:
            ciphertext = base64.b64decode(wrapped, validate=True)
            key = sm2_decrypt(device_private, ciphertext)
        except (binascii.Error, ValueError, AuthenticationFailed):
            raise CommandError("BAD_KEY", "key does not decrypt under the device SM2 key") from None
        if len(key) != KEY_BYTES:
            raise CommandError("BAD_KEY", f"key must be {KEY_BYTES} bytes, got {len(key)}")
        if kid in ring.keys and ring.keys[kid] != key:
            raise CommandError("BAD_KEY", f"kid {kid} already names a different key")
        previous = ring.rotate(kid, key)
        return {
            "kid": kid,
            "fingerprint": redact(key),
            "previous_kid": previous,
            "previous_kept_s": KEY_GRACE_S,
        }

    processor.register("device.status", device_status)
    processor.register("key.rotate", key_rotate)


#: ``orders.resend`` arguments (platform-interface.md) and their types.
RESEND_ARGS: dict[str, tuple[type, ...]] = {
    "nozzle": (str,),
    "from_nseq": (int,),
    "to_nseq": (int,),
    "since": (int, str),
    "until": (int, str),
}


def register_order_commands(processor: CommandProcessor, *, resend: Callable[..., int]) -> None:
    """``orders.resend``: mark the selected stored orders to be published again
    with ``resent: true`` (SPEC D5, D6; buffer/store.py ``request_resend``)."""

    async def orders_resend(args: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(args) - set(RESEND_ARGS))
        if unknown:
            raise CommandError(BAD_REQUEST, f"unknown arguments: {', '.join(unknown)}")
        for name, value in args.items():
            # bool is an int in Python; a flag is never a sequence number.
            if value is not None and (
                not isinstance(value, RESEND_ARGS[name]) or isinstance(value, bool)
            ):
                raise CommandError(BAD_REQUEST, f"{name} has the wrong type")
        for name in ("from_nseq", "to_nseq"):
            if args.get(name) is not None and args[name] < 1:
                raise CommandError(BAD_REQUEST, f"{name} must be at least 1")
        try:
            marked = resend(**{k: v for k, v in args.items() if v is not None})
        except ValueError as exc:  # a time that is not ISO 8601 with an offset
            raise CommandError(BAD_REQUEST, str(exc)) from None
        return {"marked": marked}

    processor.register("orders.resend", orders_resend)
