"""The supervisor: one process, one event loop, every task in one TaskGroup.

Start-up order is the data path's order: keys, store, ports, then
``READY=1`` to systemd, then the store's writer, the ports' tasks and the
uplink. Keys and store that cannot be used stop the start with one clear
line on stderr naming the config key and exit status 1 — a collector that
silently runs without its store collects nothing. ``forecourt run``
checked them before the exec (collector/cli.py, collector/remote/config_env.py),
so this is a file changed in between. A port whose line cannot be opened
does not stop the others: it starts offline, alarmed, and is retried.

The parts it starts are built from the config in collector/assembly.py.

SIGTERM / SIGINT cancel the tasks; every order was committed before the
dispenser was told it could forget it, so stopping loses nothing.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from collector import logs, version
from collector.assembly import (
    make_gauge,
    make_leds,
    make_line_check,
    make_port,
    make_pulses,
    make_seals,
    make_uplink_settings,
)
from collector.device import sdnotify, watchdog
from collector.parts import StartError
from collector.retry import Retry
from collector.station.lending import Lending
from config.filemodes import DAEMON_UMASK

if TYPE_CHECKING:
    from buffer.store import OrderStore
    from collector.ota.upgrade import Ota
    from collector.remote.config_change import ConfigChanges
    from collector.station.evidence import EvidenceRecorder
    from collector.station.gauge import GaugeTask
    from collector.station.gpio_inputs import PulseInputs
    from collector.station.listen import ListenPort
    from collector.station.nozzles import NozzleTable
    from collector.station.port import PollPort
    from collector.station.relay import RelayPort
    from collector.station.seals import SealTask
    from config.models import Config
    from uplink.commands import CommandProcessor
    from uplink.mqtt import Uplink

    Port = PollPort | RelayPort | ListenPort

log = structlog.get_logger("collector")

#: Backoff bounds (seconds) for reopening a serial port that failed. Opening
#: a missing device costs one failed open(), so trying every 10 s at worst is
#: cheap, and a re-plugged adapter is collecting again within seconds.
PORT_RETRY_MIN_S, PORT_RETRY_MAX_S = 0.5, 10.0


#: Exit status of a clean stop asked for by ``device.restart`` (EX_TEMPFAIL):
#: the unit restarts on it (RestartForceExitStatus=75).
EXIT_RESTART = 75


def run_daemon(
    config: Config, config_path: Path | None = None, overrides: Sequence[str] = ()
) -> int:
    # The unit's UMask=0077 whoever starts the daemon: root's usual 022 would
    # leave what it creates (markers, a release's files) readable by all.
    os.umask(DAEMON_UMASK)
    logs.configure(config.log.level, config.log.format)
    try:
        return asyncio.run(Collector(config, config_path, overrides).main())
    except StartError as exc:
        print(f"forecourt: cannot start: {exc}", file=sys.stderr)
        from collector.remote.config_change import revert_failed_start

        # A config.set that cannot start is undone now, not at its deadline.
        if config_path is not None and revert_failed_start(config_path, str(exc)):
            return EXIT_RESTART
        return 1
    except KeyboardInterrupt:
        return 0


class Collector:
    def __init__(
        self, config: Config, config_path: Path | None = None, overrides: Sequence[str] = ()
    ) -> None:
        self.config = config
        self.config_path = config_path  # the web page's config editor writes it
        self.overrides = tuple(overrides)  # --set: config.set validates with them too
        self.config_changes: ConfigChanges | None = None
        self.started = time.monotonic()
        self.ports: list[Port] = []
        #: Poll lines lent to the web page's detect (collector/station/lending.py).
        self.lending = Lending()
        self.gauge: GaugeTask | None = None
        self.commands: CommandProcessor | None = None
        self.ota: Ota | None = None  # signed upgrades (collector/ota/, docs/upgrade.md)
        # Live parts the control socket reads (collector/tools/control.py).
        self.store: OrderStore | None = None
        self.nozzles: NozzleTable | None = None
        self.uplink: Uplink | None = None
        self.seals: SealTask | None = None  # SPEC F3, when [[seals]] names any
        self.pulses: PulseInputs | None = None  # when [[pulses]] names any
        self.evidence: EvidenceRecorder | None = None  # the raw log, when evidence_days > 0
        self._stop = asyncio.Event()
        self.restart_requested = False
        #: Failures the daemon caught and survived, by log event (each logged
        #: with its traceback): ``forecourt status`` shows them.
        self.errors: dict[str, int] = {}
        from collector.device.clock import ClockSync

        self.clock = ClockSync(
            step_threshold_ms=config.clock.step_threshold_ms,
            alarm_threshold_ms=config.clock.alarm_threshold_ms,
        )

    async def main(self) -> int:
        from buffer.capacity import CapacityPolicy
        from buffer.store import OrderStore, StoreError
        from collector.station.nozzles import NozzleTable
        from uplink.keys import KeyFileError, check_owner_only, load_keys

        cfg = self.config
        # Handlers first: a SIGTERM during start-up (or right after READY=1)
        # must stop cleanly too, not kill the process by default action.
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        try:
            # D9: the SM4 keys stay the collector's: a key file others may read
            # stops the start, with the chmod that fixes it.
            check_owner_only(cfg.uplink.keys_file)
            keys = load_keys(cfg.uplink.keys_file)
        except KeyFileError as exc:
            raise StartError(f"uplink.keys_file: {exc}") from None
        if cfg.uplink.kid not in keys:
            raise StartError(f"uplink.kid: no key {cfg.uplink.kid!r} in {cfg.uplink.keys_file}")
        try:
            store = OrderStore(
                cfg.store.path,
                CapacityPolicy(
                    cfg.store.max_records, cfg.store.retain_per_nozzle, cfg.store.max_bytes
                ),
            )
        except StoreError as exc:
            raise StartError(f"store.path: {exc}") from None
        self._check_previous_stop(store)
        self.evidence = self._open_evidence()
        nozzles = NozzleTable()
        uplink = self._make_uplink(store, nozzles, keys[cfg.uplink.kid])
        store.writer.on_commit = uplink.wake  # every new record: look at the store
        self._evidence_alarms(store, uplink.wake)
        self.store, self.nozzles, self.uplink = store, nozzles, uplink
        if self.config_path is not None:
            from collector.remote.config_change import ConfigChanges

            self.config_changes = ConfigChanges(self, self.config_path, self.overrides)
        try:
            self._setup_commands(store, uplink, keys)
            await self._open_ports(store, nozzles, uplink)
            if cfg.pulses:  # the sinks ask them about every sale from the first
                self.pulses = make_pulses(cfg, store, uplink, self.ports)
        except BaseException:
            self._close(store)
            raise
        if cfg.gauge.enabled:
            # Never a start error: the console may be off; the task retries.
            self.gauge = make_gauge(cfg, store, uplink.wake)
        from uplink.crypto import backend_name

        sm4, why_not_openssl = backend_name()  # loaded and self-tested before READY
        if why_not_openssl:
            log.warning("sm4_fallback", backend=sm4, reason=why_not_openssl)
        # What start-up found (UNCLEAN_STOP, a device missing: PORT_OFFLINE) is
        # committed before systemd hears we are ready; refused, it stays queued.
        store.writer.flush()
        sdnotify.notify("READY=1")
        log.info(
            "started", version=version(), ports=len(self.ports), store=str(store.path), sm4=sm4
        )
        try:
            await self._run(uplink)
        finally:
            self._close(store)
            logs.close_all()  # the summaries of the last minute
            log.info("stopped", restart=self.restart_requested)
        return EXIT_RESTART if self.restart_requested else 0

    def request_restart(self) -> None:
        """``device.restart``: stop cleanly, exit :data:`EXIT_RESTART`; systemd
        starts the collector again (``RestartForceExitStatus=``)."""
        self.restart_requested = True
        self._stop.set()

    def _close(self, store: OrderStore) -> None:
        from collector.station import capture, selfcheck

        for port in self.ports:
            port.close()
        if self.evidence is not None:
            capture.evidence = None
            try:
                self.evidence.flush()  # the open blocks: a clean stop keeps them
                self.evidence.rawlog.close()
            except Exception:  # evidence beside the records: the store closes whatever
                log.exception("raw_log_close_failed")
            self.evidence = None
        # What the parts handed to the writer and it has not committed yet
        # (a port's last alarm, a command's reply): committed now, or said.
        if not store.writer.flush():
            log.error("records_not_stored_at_stop", queued=store.writer.queued)
        store.close()
        selfcheck.end_run(store.path)

    def _check_previous_stop(self, store: OrderStore) -> None:
        """F1: an UNCLEAN_STOP alarm when the last run ended without stopping."""
        from collector.station import selfcheck
        from collector.station.alarm_store import store_alarm

        try:
            previous = selfcheck.begin_run(store.path)
        except OSError:  # the store's directory took the store: rare; say it
            self._failed("run_marker_failed")
            return
        if previous is None:
            return
        detail = {"previous_run_started_ms": previous}
        store_alarm(store, "device", "UNCLEAN_STOP", True, self.config.device.tzinfo, detail)
        log.warning("unclean_previous_stop", previous_run_started_ms=previous)

    def _open_evidence(self) -> EvidenceRecorder | None:
        """The raw log beside the store and its recorder, fed by every port."""
        from buffer.rawblocks import RawLogError
        from buffer.rawlog import RawLog, rawlog_path
        from collector.station import capture
        from collector.station.evidence import EvidenceRecorder
        from uplink.crypto import sm3

        cfg = self.config.store
        if not cfg.evidence_days:
            return None
        try:
            rawlog = RawLog(
                rawlog_path(cfg.path),
                sm3,
                max_bytes=cfg.evidence_max_bytes,
                keep_days=cfg.evidence_days,
            )
        except RawLogError as exc:
            raise StartError(f"store.evidence_days: {exc}") from None
        recorder = EvidenceRecorder(rawlog)
        capture.evidence = recorder.feed
        return recorder

    def _evidence_alarms(self, store: OrderStore, wake: Callable[[], None]) -> None:
        """The raw log's EVIDENCE_FAULT into the store, like any alarm."""
        from collector.station.alarm_store import store_alarm

        if self.evidence is None:
            return
        tz = self.config.device.tzinfo

        def alarm(raised: bool, detail: dict[str, Any]) -> None:
            store_alarm(store, "store", "EVIDENCE_FAULT", raised, tz, detail, wake=wake)

        self.evidence.on_alarm = alarm

    def _setup_commands(self, store: OrderStore, uplink: Uplink, keys: dict[str, bytes]) -> None:
        """Platform commands, when the config names their keys."""
        from collector.remote.command_setup import setup_commands

        self.commands = setup_commands(
            self.config, store, uplink, keys, self.clock, self.request_restart, lambda: self.config
        )
        if self.commands is not None and self.config_changes is not None:
            self.config_changes.register(self.commands)
        if self.commands is not None and self.evidence is not None:
            from collector.remote.command_setup import store_reply
            from collector.station.evidence_io import register_evidence_fetch

            register_evidence_fetch(
                self.commands,
                self.evidence.rawlog,
                self.evidence,
                {pc.number: pc.protocol for pc in self.config.ports},
                lambda body: store_reply(store, uplink, body),
            )
        from collector.ota.upgrade import setup_ota

        self.ota = setup_ota(
            self.config, store, uplink, self.commands, self.request_restart, lambda: self.ports
        )

    def _make_uplink(self, store: OrderStore, nozzles: NozzleTable, key: bytes) -> Uplink:
        from uplink.mqtt import Uplink

        settings = make_uplink_settings(self.config, key)
        uplink = Uplink(settings, store, lambda: self.heartbeat(store, nozzles))
        from collector.station.link_alarms import hook_link_alarms

        hook_link_alarms(uplink, store, self.config.device.tzinfo)
        return uplink

    async def _open_ports(self, store: OrderStore, nozzles: NozzleTable, uplink: Uplink) -> None:
        """Build every port and open its line.

        A line that cannot be opened at start does not stop the other 31
        ports: the port starts offline with PORT_OFFLINE raised (the reason
        in its detail) and is retried like a port that failed later — a
        device that is missing (an adapter unplugged, a USB hub that did
        not come up) as much as one that refuses the configured line
        settings (a wrong parity, a rate or RS-485 mode the adapter lacks:
        the technician fixes the config; the others collect meanwhile).
        """
        from collector.station.edge import EdgeSettings

        cfg = self.config
        edge = EdgeSettings.from_config(cfg)
        for pc in cfg.ports:
            port = make_port(cfg, pc, store, nozzles, uplink, edge)
            self.ports.append(port)
            missing = [d for d in (pc.device, pc.pos_device) if d and not os.path.exists(d)]
            if missing:
                log.error("port_missing", port=pc.number, device=missing[0])
                port.sink.port_link(False, f"{missing[0]}: no such device")
                continue
            try:
                await port.open()
            except (OSError, ValueError) as exc:
                reason = f"{pc.device}: {exc}"
                log.error("port_failed", port=pc.number, error=reason)
                port.sink.port_link(False, reason)
                continue
            port.stats.online = True

    async def _run(self, uplink: Uplink) -> None:
        store = self.store
        assert store is not None  # main() opens it before the ports and the uplink
        async with asyncio.TaskGroup() as tg:
            # The store's writer first: every record of the others goes through it.
            tasks = [tg.create_task(store.writer.run())]
            tasks += [tg.create_task(self._supervise(p)) for p in self.ports]
            if self.evidence is not None:
                tasks.append(tg.create_task(self.evidence.run()))
            tasks.append(tg.create_task(uplink.run()))
            tasks.append(tg.create_task(make_line_check(self.config, self.ports, store).run()))
            if self.config.seals:
                self.seals = make_seals(self.config, store, uplink)
                tasks.append(tg.create_task(self.seals.run()))
            if self.pulses is not None:
                tasks.append(tg.create_task(self.pulses.run()))
            leds = make_leds(self.config, self.ports, self._store_ok, uplink)
            if leds is not None:
                tasks.append(tg.create_task(leds.run()))
            beat = watchdog.interval_s()
            if beat is not None:
                tasks.append(tg.create_task(watchdog.run(beat, self._store_ok)))
            if self.gauge is not None:
                tasks.append(tg.create_task(self.gauge.run()))
            tasks.append(tg.create_task(self._control()))
            if self.config_changes is not None:  # config.set's confirm window
                tasks.append(tg.create_task(self.config_changes.run()))
            if self.ota is not None:
                tasks.append(tg.create_task(self.ota.run()))
            if self.config.web.bind is not None:
                tasks.append(tg.create_task(self._web(self.config.web.bind)))
            await self._stop.wait()
            log.info("stopping")
            sdnotify.notify("STOPPING=1")
            for task in tasks:
                task.cancel()

    async def _control(self) -> None:
        """The technician CLI's socket; a failure never stops collecting."""
        from collector.tools import control

        try:
            await control.serve(self, self.config.control.socket)
        except OSError:
            self._failed("control_failed", socket=self.config.control.socket)

    async def _web(self, bind: tuple[str, int]) -> None:
        """The local web page; a failure never stops collecting."""
        from collector.web.app import serve

        web = self.config.web
        try:
            await serve(self, bind, Path(web.password_file), self.config_path, web.hosts)
        except OSError:
            self._failed("web_failed", listen=web.listen)

    async def _supervise(self, port: Port) -> None:
        """Keep one port running; a failed line is reopened with backoff.

        PORT_OFFLINE is raised the moment the line fails (read error, EOF,
        a write that does not drain, an open that fails) — not after the
        backoff — and cleared once the line is open again.
        """
        retry = Retry(PORT_RETRY_MIN_S, PORT_RETRY_MAX_S)
        while True:
            if self.lending.lent(port.number):
                await self.lending.returned(port.number)  # lent: closed until it is back
                retry.reset()
            began = time.monotonic()
            try:
                if not port.is_open:
                    await port.open()
                port.stats.online = True
                port.sink.port_link(True)
                if not await self.lending.run(port.number, port.run()):
                    port.close()  # lent (collector/station/lending.py): no backoff, no failure
                    continue
            except (OSError, ConnectionError) as exc:
                port.stats.online = False
                port.sink.port_link(False, str(exc))
                self._failed("port_failed", port=port.number)
            except Exception as exc:
                # A driver bug (or a ForbiddenCommand, D20) stops this port only:
                # the other ports and the uplink keep going (loudly logged).
                port.stats.online = False
                port.sink.port_link(False, f"{type(exc).__name__}: {exc}")
                self._failed("port_crashed", port=port.number)
            port.close()
            if time.monotonic() - began > PORT_RETRY_MAX_S:
                retry.reset()  # it ran well for a while: start over
            await asyncio.sleep(retry.next_delay())

    def _failed(self, event: str, **fields: Any) -> None:
        """Inside an ``except``: the failure logged as ``event`` with its
        traceback and counted in :attr:`errors`; the daemon goes on."""
        self.errors[event] = self.errors.get(event, 0) + 1
        log.exception(event, **fields)

    def _store_ok(self) -> bool:
        return self.store is not None and self.store.ping()

    def heartbeat(self, store: OrderStore, nozzles: NozzleTable) -> dict[str, Any]:
        """The heartbeat body (SPEC D7; platform-interface.md ``heartbeat``)."""
        try:
            st = os.statvfs(store.path.parent)
            disk_free_kb = st.f_bavail * st.f_frsize // 1024
        except OSError:
            disk_free_kb = None
        return {
            "uptime_s": int(time.monotonic() - self.started),
            "version": version(),
            # The release directory the launcher started (docs/upgrade.md).
            "slot": os.environ.get("FORECOURT_RELEASE", "a"),
            "ports_online": sum(1 for p in self.ports if p.stats.online),
            "ports_total": len(self.config.ports),
            "nozzles": nozzles.states(),
            "unsent": store.unsent_counts(),
            "clock_offset_ms": self.clock.offset_ms,
            "link": self.uplink.link() if self.uplink is not None else None,
            "mem_kb": _rss_kb(),
            "disk_free_kb": disk_free_kb,
        }


def _rss_kb() -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None
