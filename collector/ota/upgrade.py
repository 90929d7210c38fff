"""``ota.upgrade`` / ``ota.rollback`` and the health gate (SPEC D8; docs/upgrade.md).

The daemon's narrow hook: :func:`setup_ota` registers the two commands on
the command processor and returns an :class:`Ota` whose :meth:`Ota.run`
task (in the daemon's TaskGroup) reports what the launcher did since the
last run and, when this process is a trial release, judges it.

Everything slow runs off the event loop: the bundle signature check (pure
Python SM2) and the download, unpack and venv install (collector/ota/
download.py, install.py: blocking code in a worker thread, the venv and
the byte-compiling in subprocesses). Collection never waits on an upgrade.

Replies: the command's own reply says the upgrade was accepted (after the
arguments and the release signature were checked) or refused; later replies
under the same command id say ``downloaded``, ``installed``, ``switching``,
and finally — from the new release — ``committed``, or from the old one,
after a rollback, the error ``ROLLED_BACK`` (docs/uplink-protocol.md).
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from collector import version as installed_version
from collector.ota import launcher

if TYPE_CHECKING:
    from buffer.store import OrderStore
    from config.models import Config
    from uplink.commands import CommandProcessor
    from uplink.mqtt import Uplink

log = structlog.get_logger("ota")

#: How often the health gate looks. Cheap checks (flags and one SQLite ping).
GATE_POLL_S = 0.5
#: A trial's deadline beyond the health window: the install restart itself
#: (stop, launcher, imports) must not eat the window on a slow gateway.
RESTART_ALLOWANCE_S = 120.0

_SM3 = re.compile(r"[0-9a-fA-F]{64}")
_SIG = re.compile(r"[0-9a-fA-F]{128}")
_URL = re.compile(r"https?://[^\s]{1,2000}")


class Ota:
    def __init__(
        self,
        config: Config,
        store: OrderStore,
        uplink: Uplink,
        restart: Callable[[], None],
        ports: Callable[[], Sequence[Any]],
        release_public: str,
    ) -> None:
        assert config.ota.root is not None
        self.cfg = config.ota
        self.tz = config.device.tzinfo
        self.devices = {pc.number: pc.device for pc in config.ports}
        self.root: Path = config.ota.root
        self.store, self.uplink, self.restart, self.ports = store, uplink, restart, ports
        self.release_public = release_public
        self.running = os.environ.get("FORECOURT_RELEASE") or installed_version()
        self.busy = False
        self._tasks: set[asyncio.Task[None]] = set()
        # ota-state.json is read, changed and written back by the start's
        # report, the health gate, a failed gate, ota.rollback and the trial's
        # begin, each across awaits (worker threads): one at a time, or the
        # last writer wins (a rollback asked during the gate's mark-good
        # would be lost, or the mark itself).
        self._state_lock = asyncio.Lock()

    # -- replies, alarms ------------------------------------------------------

    def _reply(self, command_id: str | None, result: dict[str, Any] | None, error: Any) -> bool:
        from collector.remote.command_setup import store_reply
        from uplink.commands import reply_body

        return store_reply(self.store, self.uplink, reply_body(command_id, result, error))

    async def _reply_stored(
        self, command_id: str | None, result: dict[str, Any] | None, error: Any
    ) -> bool:
        """Like :meth:`_reply`, and wait for its commit: True once it is stored."""
        from collector.remote.command_setup import reply_record
        from uplink.commands import reply_body

        record = reply_record(reply_body(command_id, result, error))
        outcome = await self.store.writer.stored(record)
        if outcome.kept:
            self.uplink.wake()
        return outcome.kept

    def _alarm(self, code: str, detail: dict[str, Any]) -> bool:
        """Store one device alarm; False (logged) when the store refused it."""
        from collector.station.alarm_store import store_alarm

        return store_alarm(self.store, "device", code, True, self.tz, detail, wake=self.uplink.wake)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _restart_after_reply(self) -> None:
        from collector.remote.command_setup import restart_after_reply

        log.warning("ota_restart", running=self.running)
        await restart_after_reply(self.store, self.restart)

    # -- the task -------------------------------------------------------------

    async def run(self) -> None:
        """Report the launcher's last decision, then judge a trial of this release.

        Never raises: a failure here must not stop collecting. A trial that
        cannot judge itself (the gate itself failed) is not good: it marks
        itself failed and stops, and the launcher goes back."""
        trial: dict[str, Any] | None = None
        try:
            async with self._state_lock:
                state = await asyncio.to_thread(launcher.read_state, self.root)
                await asyncio.to_thread(self._tidy, state)
                await self._report_last(state)
            trial = state.get("trial")
            if trial and trial.get("version") == self.running:
                await self._gate(trial)
        except Exception as exc:
            log.exception("ota_task_failed", root=str(self.root))
            if trial and trial.get("version") == self.running:
                await self._fail(f"health gate crashed: {type(exc).__name__}")

    async def _report_last(self, state: dict[str, Any]) -> None:
        last = state.get("last")
        if not last or last.get("reported"):
            return
        from uplink.commands import CommandError

        cid = last.get("command_id")
        reply: tuple[dict[str, Any] | None, CommandError | None]
        if last.get("result") == "good":
            reply = ({"stage": "committed", "version": last.get("version")}, None)
        elif last.get("reason") == "ota.rollback":
            reply = ({"stage": "rolled_back", "version": self.running}, None)
        elif last.get("result") == "rollback_failed":
            message = f"stayed on {self.running}: {last.get('reason')}"
            reply = (None, CommandError("ROLLBACK_FAILED", message))
        else:
            message = f"{last.get('version')} rolled back to {self.running}: {last.get('reason')}"
            reply = (None, CommandError("ROLLED_BACK", message))
            self._alarm(
                "OTA_ROLLED_BACK",
                {"version": last.get("version"), "to": self.running, "reason": last.get("reason")},
            )
        # "reported" is written only once the reply is committed: a kill before
        # that reports it again at the next start (the same reply, a new rid).
        if not await self._reply_stored(cid, *reply):
            return  # reported at the next start
        last["reported"] = True
        await asyncio.to_thread(launcher.write_state, self.root, state)
        log.info("ota_reported", **{k: v for k, v in last.items() if k != "reported"})

    def _tidy(self, state: dict[str, Any]) -> None:
        """What a kill during an upgrade left: half-made release directories (no
        INSTALLED), the unpack directory, whole downloads not installed. The
        newest partial download is kept: the platform's next ota.upgrade resumes it."""
        import shutil

        keep = {state.get("good"), launcher.current_release(self.root), self.running}
        keep.add((state.get("trial") or {}).get("version"))
        for path in sorted((self.root / launcher.RELEASES).glob("*")):
            if path.is_dir() and path.name not in keep and not (path / launcher.INSTALLED).exists():
                shutil.rmtree(path, ignore_errors=True)
                log.warning("half_installed_release_removed", release=path.name)
        staging = self.root / "staging"
        shutil.rmtree(staging / "unpack", ignore_errors=True)
        for path in staging.glob("*.bundle"):
            path.unlink(missing_ok=True)
        parts = sorted(staging.glob("*.part"), key=lambda p: p.stat().st_mtime)
        for path in parts[:-1]:
            path.unlink(missing_ok=True)

    def health(self) -> str | None:
        """None when healthy, else what is missing (collector running: we are)."""
        if not self.store.ping():
            return "store not answering"
        # A port whose adapter is not plugged in says nothing about the release.
        present = {n for n, device in self.devices.items() if device and os.path.exists(device)}
        down = [p.number for p in self.ports() if not p.stats.online and p.number in present]
        if down:
            return f"ports not bound: {down}"
        if not self.uplink.stats.connected:
            return "platform not reached"
        return None

    async def _gate(self, trial: dict[str, Any]) -> None:
        # The window runs from this start (the config's), and never past the
        # trial's deadline in the state (set at the switch, the launcher's too).
        deadline_ms = int(trial.get("deadline_ms", 0))
        window_ends = time.monotonic() + self.cfg.health_window_s
        healthy_since: float | None = None
        why = "not judged"
        log.info("health_gate", release=self.running, hold_s=self.cfg.health_hold_s)
        while time.time_ns() // 1_000_000 < deadline_ms and time.monotonic() < window_ends:
            problem = self.health()
            if problem is None:
                healthy_since = healthy_since or time.monotonic()
                if time.monotonic() - healthy_since >= self.cfg.health_hold_s:
                    await self._commit_trial()
                    return
            else:
                healthy_since, why = None, problem
            await asyncio.sleep(GATE_POLL_S)
        await self._fail(why)

    async def _commit_trial(self) -> None:
        """The gate passed: mark this release good and report it."""
        async with self._state_lock:
            state = await asyncio.to_thread(self._mark_good)
            if state is not None:
                await self._report_last(state)

    async def _fail(self, why: str) -> None:
        log.error("health_gate_failed", release=self.running, reason=why)
        try:
            async with self._state_lock:
                state = await asyncio.to_thread(launcher.read_state, self.root)
                if state.get("trial"):
                    state["trial"]["failed"] = why
                    await asyncio.to_thread(launcher.write_state, self.root, state)
        except OSError as exc:  # the boot count and the deadline still judge it
            log.error("trial_state_not_written", exc_info=exc)
        self.restart()  # the launcher rolls back (with the store downgrade, if any)

    def _mark_good(self) -> dict[str, Any] | None:
        """In a worker thread: the state says good, older releases pruned."""
        from collector.ota.install import prune

        state = launcher.read_state(self.root)
        trial = state.get("trial") or {}
        if trial.get("version") != self.running:
            return None
        state["good"], state["previous"] = self.running, trial.get("from")
        state["trial"] = None
        state["last"] = {
            "result": "good",
            "version": self.running,
            "command_id": trial.get("command_id"),
            "at_ms": time.time_ns() // 1_000_000,
            "reported": False,
        }
        launcher.write_state(self.root, state)
        log.info("marked_good", release=self.running, previous=state["previous"])
        removed = prune(self.root, {v for v in (state["good"], state["previous"]) if v})
        if removed:
            log.info("releases_pruned", removed=removed)
        return state

    # -- ota.upgrade ----------------------------------------------------------

    async def upgrade(self, args: dict[str, Any]) -> dict[str, Any]:
        from collector.ota.bundle import VERSION_RE, signed_statement
        from uplink.commands import BAD_REQUEST, CommandError, current_command_id
        from uplink.crypto import sm2_verify

        version, url, size = args.get("version"), args.get("url"), args.get("size")
        sm3, sig = args.get("sm3"), args.get("sig")
        if not isinstance(version, str) or not VERSION_RE.fullmatch(version):
            raise CommandError(BAD_REQUEST, "version must be a release version string")
        if not isinstance(url, str) or not _URL.fullmatch(url):
            raise CommandError(BAD_REQUEST, "url must be http:// or https://")
        if not isinstance(size, int) or isinstance(size, bool) or size <= 0:
            raise CommandError(BAD_REQUEST, "size must be a positive integer")
        if not isinstance(sm3, str) or not _SM3.fullmatch(sm3):
            raise CommandError(BAD_REQUEST, "sm3 must be 64 hex digits")
        if not isinstance(sig, str):
            raise CommandError(BAD_REQUEST, "sig must be 128 hex digits")
        if size > self.cfg.max_bundle_bytes:
            raise CommandError(
                "BUNDLE_TOO_LARGE",
                f"{size} bytes > ota.max_bundle_bytes {self.cfg.max_bundle_bytes}",
            )
        state = await asyncio.to_thread(launcher.read_state, self.root)
        if self.busy or state.get("trial") or state.get("rollback"):
            raise CommandError("BUSY", "an upgrade or a trial is already under way")
        if version == self.running:
            raise CommandError("SAME_VERSION", f"{version} is running")
        statement = signed_statement(version, size, sm3)
        if not _SIG.fullmatch(sig) or not await asyncio.to_thread(
            sm2_verify, self.release_public, sig, statement
        ):
            raise CommandError("BAD_BUNDLE_SIGNATURE", "sig does not verify under the release key")
        self.busy = True
        self._spawn(self._upgrade(current_command_id.get(), version, url, size, sm3.lower()))
        return {"stage": "accepted", "version": version, "from": self.running}

    async def _upgrade(self, cid: str | None, version: str, url: str, size: int, sm3: str) -> None:
        from collector.ota.bundle import BundleError
        from collector.ota.download import download
        from collector.ota.install import install
        from uplink.commands import INTERNAL, CommandError

        try:
            log.info("ota_download", version=version, url=url, size=size)
            bundle = await asyncio.to_thread(
                download, url, size, sm3, self.root / "staging", self.cfg.download_timeout_s
            )
            self._reply(cid, {"stage": "downloaded", "version": version, "size": size}, None)
            try:
                await asyncio.to_thread(install, self.root, bundle, version)
            finally:
                bundle.unlink(missing_ok=True)
            self._reply(cid, {"stage": "installed", "version": version}, None)
            async with self._state_lock:
                await asyncio.to_thread(self._begin_trial, cid, version)
            window_s = int(self.cfg.health_window_s)  # replies hold no floats
            self._reply(cid, {"stage": "switching", "version": version, "window_s": window_s}, None)
            await self._restart_after_reply()
        except BundleError as exc:
            log.error("ota_refused", version=version, code=exc.code, error=str(exc))
            self._reply(cid, None, CommandError(exc.code, str(exc)))
        except Exception as exc:  # a bug is a reply and a log line, never a dead collector
            log.exception("ota_failed", version=version)
            self._reply(cid, None, CommandError(INTERNAL, f"ota.upgrade: {type(exc).__name__}"))
        finally:
            self.busy = False

    def _begin_trial(self, cid: str | None, version: str) -> None:
        """The trial state first, then the symlink (docs/upgrade.md, steps 5-6)."""
        state = launcher.read_state(self.root)
        window_ms = int((self.cfg.health_window_s + RESTART_ALLOWANCE_S) * 1000)
        state["trial"] = {
            "version": version,
            "from": self.running,
            "starts": 0,
            "deadline_ms": time.time_ns() // 1_000_000 + window_ms,
            "command_id": cid,
        }
        state["good"] = state.get("good") or self.running
        launcher.write_state(self.root, state)
        try:
            launcher.switch_current(self.root, version)
        except OSError as exc:
            # The trial state is durable and is the truth: the launcher finishes
            # the switch at the restart that follows (docs/upgrade.md, step 6).
            log.warning("ota_switch_deferred", version=version, exc_info=exc)
            return
        log.info("ota_switched", version=version, previous=self.running)

    # -- ota.rollback ---------------------------------------------------------

    async def rollback(self, args: dict[str, Any]) -> dict[str, Any]:
        from uplink.commands import CommandError, current_command_id

        if self.busy:
            raise CommandError("BUSY", "an upgrade is under way")
        async with self._state_lock:
            state = await asyncio.to_thread(launcher.read_state, self.root)
            trial = state.get("trial")
            back = trial.get("from") if trial else state.get("previous")
            if not back or back == self.running or not launcher.is_installed(self.root, back):
                raise CommandError("NO_PREVIOUS", "no previous release is installed")
            state["rollback"] = {
                "to": back,
                "from": self.running,
                "command_id": current_command_id.get(),
            }
            await asyncio.to_thread(launcher.write_state, self.root, state)
        self._spawn(self._restart_after_reply())
        return {"stage": "rolling_back", "from": self.running, "to": back}


def setup_ota(
    config: Config,
    store: OrderStore,
    uplink: Uplink,
    processor: CommandProcessor | None,
    restart: Callable[[], None],
    ports: Callable[[], Sequence[Any]],
) -> Ota | None:
    """The OTA controller with its commands registered, or None when OTA is off."""
    from collector.parts import StartError
    from uplink.keys import KeyFileError, load_sm2_public

    o = config.ota
    if o.root is None and o.release_public_key_file is None:
        return None
    if o.root is None or o.release_public_key_file is None or processor is None:
        raise StartError(
            "ota: set both root and release_public_key_file, with platform commands on"
        )
    try:
        release_public = load_sm2_public(o.release_public_key_file)
    except KeyFileError as exc:
        raise StartError(f"ota.release_public_key_file: {exc}") from None
    ota = Ota(config, store, uplink, restart, ports, release_public)
    processor.register("ota.upgrade", ota.upgrade)
    processor.register("ota.rollback", ota.rollback)
    return ota
