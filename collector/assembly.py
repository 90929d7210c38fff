"""The collector's parts, built from the config: drivers, ports, gauge, checks, LEDs.

collector/daemon.py decides the start-up order and supervises; this module
only turns config tables into the objects it starts — each function takes
what it needs and opens nothing (no line, no socket, no file).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import tzinfo
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TypeVar

from collector import version
from config.view import ConfigView

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

    from buffer.store import OrderStore
    from collector.device.leds import LedTask
    from collector.station.edge import EdgeSettings
    from collector.station.gauge import GaugeTask
    from collector.station.gpio_inputs import PulseInput, PulseInputs
    from collector.station.linecheck import LineCheckTask
    from collector.station.listen import ListenPort
    from collector.station.nozzles import NozzleTable
    from collector.station.port import PollPort
    from collector.station.relay import RelayPort
    from collector.station.seals import SealTask
    from config.models import Config, PortConfig
    from uplink.mqtt import Uplink, UplinkSettings

    Port = PollPort | RelayPort | ListenPort

T = TypeVar("T", bound="DataclassInstance")


def make_driver(port: PortConfig, tz: tzinfo) -> Any:
    """The port's driver with its protocol's options from the config.

    A protocol whose sales carry no time (DART, Gilbarco) stamps them with
    the driver's ``clock``: give it the station's wall clock, naive like a
    dispenser's own TIME field, so every order's ``ended_at`` means the same.
    """
    from protocols import load_driver

    return _with_options(load_driver(port.protocol), port, tz, only_taken=False)


def make_monitor(port: PortConfig, tz: tzinfo) -> Any:
    """The port's passive monitor (relay, listen) with the options of its
    protocol it takes (a DART monitor reads sales with the driver's decimal
    places, grades and clock; the ones only a poller uses are left out)."""
    from protocols import load_monitor

    return _with_options(load_monitor(port.protocol), port, tz, only_taken=True)


def _with_options(cls: Any, port: PortConfig, tz: tzinfo, *, only_taken: bool) -> Any:
    """``cls(addresses, **options)``; ``only_taken``: the options its signature
    names (a driver takes them all: one it does not is a bug, and raises)."""
    from datetime import datetime

    taken = _parameters(cls)
    kwargs = option_kwargs(port.options)
    if only_taken:
        kwargs = {k: v for k, v in kwargs.items() if k in taken}
    if "clock" in taken:
        kwargs["clock"] = lambda: datetime.now(tz).replace(tzinfo=None)
    return cls(port.addresses, **kwargs)


def _parameters(cls: Any) -> set[str]:
    """The keyword parameters ``cls(...)`` takes: a constructor that passes
    ``**options`` on (the CK1313 and Lanfeng monitors) takes its base's, so
    those get the port's decimals and the station's clock too."""
    import inspect

    names: set[str] = set()
    for klass in inspect.getmro(cls):
        if "__init__" not in vars(klass):
            continue
        params = inspect.signature(vars(klass)["__init__"]).parameters.values()
        names |= {p.name for p in params if p.kind is not p.VAR_KEYWORD}
        if all(p.kind is not p.VAR_KEYWORD for p in params):
            break
    return names


def from_section(cls: type[T], section: Any, **given: Any) -> T:
    """``cls(**given)`` and, for every other field of dataclass ``cls``, the value of
    the same name in config ``section`` (a model or its view), where it has one: a
    value a part takes as configured keeps the config's name. A field the section
    lacks keeps its default."""
    import dataclasses

    fields = [f.name for f in dataclasses.fields(cls) if f.init and f.name not in given]
    taken = {name: getattr(section, name) for name in fields if hasattr(section, name)}
    return cls(**taken, **given)


def pulse_settings(p: Any) -> PulseInput:
    """A ``[[pulses]]`` entry (config model or the daemon's view of it) as input."""
    from collector.station.gpio_inputs import PulseInput
    from collector.station.pulse_check import PulseSettings

    def dec(value: float) -> Decimal:
        return Decimal(str(value))

    settings = PulseSettings(
        nozzle=p.nozzle,
        litres_per_pulse=dec(p.litres_per_pulse),
        has_switch=p.nozzle_line is not None,
        tolerance_pct=dec(p.tolerance_pct),
        time_tolerance_s=float(p.time_tolerance_s),
        sale_wait_s=float(p.sale_wait_s),
        unreported_min_l=dec(p.unreported_min_l),
    )
    return from_section(PulseInput, p, settings=settings, chip=str(p.chip))


def option_kwargs(options: Any) -> dict[str, Any]:
    """A port's protocol options as the driver's keyword arguments: the daemon's
    view of them (config/handoff.py), or the dataclass itself (tools, tests)."""
    if options is None:
        return {}
    if isinstance(options, ConfigView):
        return dict(options.view_fields)
    import dataclasses

    return {f.name: getattr(options, f.name) for f in dataclasses.fields(options)}


def make_gauge(cfg: Config, store: OrderStore, on_commit: Callable[[], None]) -> GaugeTask:
    """The gauge task with its wet-stock analytics, from ``[gauge]``, ``[[tanks]]``
    and ``[wetstock]``."""
    from decimal import Decimal

    from collector.station.gauge import GaugeSettings, GaugeTask
    from collector.station.gauge_records import GaugeState
    from collector.station.wetstock import Wetstock, WetstockSettings

    g, w = cfg.gauge, cfg.wetstock

    def dec(value: float | None) -> Decimal | None:
        return None if value is None else Decimal(str(value))

    settings = from_section(
        GaugeSettings,
        g,
        security_code=g.security_code.get_secret_value() if g.security_code else None,
        periods={
            "i201": g.inventory_s,
            "i202": g.deliveries_s,
            "i205": g.alarms_s,
            "i101": g.alarms_s,
            "i208": g.leak_s,
        },
        response_timeout_s=g.response_timeout_ms / 1000,
    )
    analytics = WetstockSettings(
        min_rise_l=Decimal(str(w.delivery_min_rise_l)),
        noise_l=Decimal(str(w.delivery_noise_l)),
        settle_s=w.delivery_settle_s,
        period_s=w.reconcile_period_s,
        variance_l=dec(w.variance_alarm_l),
        variance_pct=dec(w.variance_alarm_pct),
        capacity_tolerance_pct=Decimal(str(w.capacity_tolerance_pct)),
    )
    wetstock = Wetstock(analytics, {t.number: dec(t.declared_capacity_l) for t in cfg.tanks})
    tz = cfg.device.tzinfo
    state = GaugeState(wetstock, {t.number: t.grade for t in cfg.tanks}, tz)
    nozzles = {t.number: t.nozzles for t in cfg.tanks}
    return GaugeTask(settings, state, store, nozzles, tz, on_commit)


def make_uplink_settings(cfg: Config, key: bytes) -> UplinkSettings:
    """The uplink's settings from ``[uplink]``: its endpoints in order, the SM4 key."""
    from uplink.failover import Endpoint
    from uplink.mqtt import UplinkSettings

    u = cfg.uplink
    endpoints = []
    for e in u.endpoint_list():
        at = e.address(u.tls)
        endpoints.append(
            Endpoint(e.label, at.host, at.port, e.interface, at.tls, at.scheme, at.path)
        )
    return from_section(
        UplinkSettings,
        u,
        device_id=cfg.device.id,
        key=key,
        password=u.password.get_secret_value() if u.password else None,
        version=version(),
        endpoints=tuple(endpoints),
        clean_session=u.session == "clean",
        ca_file=None if u.ca_file is None else str(u.ca_file),
    )


def make_port(
    cfg: Config,
    pc: PortConfig,
    store: OrderStore,
    nozzles: NozzleTable,
    uplink: Uplink,
    edge: EdgeSettings,
) -> Port:
    """The port object for ``pc.mode``: poll master, relay or listening tap."""
    from collector.device.serialfd import RS485, LineSettings
    from collector.station.sink import PortSink

    tz = cfg.device.tzinfo
    rs485 = None
    if pc.rs485:
        rs485 = RS485(pc.rs485_rts_on_send, pc.rs485_delay_before_ms, pc.rs485_delay_after_ms)
    line = LineSettings(pc.device, pc.baudrate, pc.bytesize, pc.parity, pc.stopbits, rs485)
    if pc.mode == "poll":
        from collector.station.port import PollPort

        return PollPort(
            number=pc.number,
            line=line,
            driver=make_driver(pc, tz),
            store=store,
            nozzles=nozzles,
            station=cfg.device.station,
            tz=tz,
            poll_interval_s=pc.poll_interval_ms / 1000,
            idle_poll_interval_s=pc.idle_poll_interval_ms / 1000,
            inter_frame_gap_s=None
            if pc.inter_frame_gap_ms is None
            else pc.inter_frame_gap_ms / 1000,
            response_timeout_s=pc.response_timeout_ms / 1000,
            on_commit=uplink.wake,
            edge=edge,
            nozzles_per_pump=pc.nozzles,
        )
    sink = PortSink(
        number=pc.number,
        store=store,
        nozzles=nozzles,
        station=cfg.device.station,
        tz=tz,
        on_commit=uplink.wake,
        edge=edge,
        protocol=pc.protocol,
        nozzles_per_pump=pc.nozzles,
    )
    monitor = make_monitor(pc, tz)
    sink.books = make_books(cfg, sink, monitor)
    if pc.mode == "relay":
        from collector.station.relay import RelayPort

        assert pc.pos_device is not None  # the config requires it
        pos = LineSettings(pc.pos_device, pc.baudrate, pc.bytesize, pc.parity, pc.stopbits, rs485)
        return RelayPort(number=pc.number, dispenser=line, pos=pos, monitor=monitor, sink=sink)
    from collector.station.listen import ListenPort

    return ListenPort(number=pc.number, line=line, monitor=monitor, sink=sink)


def make_books(cfg: Config, sink: Any, monitor: Any) -> Any:
    """The port's reconciliation with the POS (collector/station/books.py) when ``[books]``
    is enabled and the protocol's monitor sees the POS's side (``master_frames``:
    Sinopec, Censtar; docs/brands.md says which families do); else None."""
    books = cfg.books
    if not books.enabled or not hasattr(monitor, "master_frames"):
        return None
    from collector.station.books import PortBooks
    from collector.station.reconcile import BooksSettings

    return PortBooks(sink, monitor, from_section(BooksSettings, books))


def make_line_check(cfg: Config, ports: Sequence[Port], store: OrderStore) -> LineCheckTask:
    """LINE_SILENT / LINE_REWIRED for every port (SPEC F1)."""
    from collector.station.linecheck import REWIRED_CODE, SILENT_CODE, LineCheckTask, LineWatch
    from collector.station.selfcheck import alarm_raised

    by_number = {pc.number: pc for pc in cfg.ports}
    watches = []
    for port in ports:
        pc = by_number[port.number]
        source = f"p{port.number:02d}"
        watches.append(
            LineWatch(
                protocol=pc.protocol,
                addresses=pc.addresses,
                side="bus" if pc.mode == "listen" else "dispenser",
                silent_after_s=pc.line_silent_after_s,
                rewired_after_s=pc.line_rewired_after_s,
                silent=alarm_raised(store, source, SILENT_CODE),
                rewired=alarm_raised(store, source, REWIRED_CODE),
            )
        )
    return LineCheckTask(ports, watches)


def make_seals(cfg: Config, store: OrderStore, uplink: Uplink) -> SealTask:
    """The seal task for ``[[seals]]`` (SPEC F3)."""
    from collector.station.seals import SealSpec, SealTask

    specs = [
        SealSpec(s.name, s.dispenser, s.value, s.intact_level, s.poll_ms / 1000) for s in cfg.seals
    ]
    return SealTask(specs, store, cfg.device.tzinfo, uplink.wake)


def make_pulses(
    cfg: Config, store: OrderStore, uplink: Uplink, ports: Sequence[Port]
) -> PulseInputs:
    """The pulse and nozzle-switch inputs of ``[[pulses]]``, each port with a
    nozzle among them asking them about its sales (the sink's second source)."""
    from collector.station.gpio_inputs import PulseInputs

    pulses = PulseInputs(
        [pulse_settings(p) for p in cfg.pulses], store, cfg.device.tzinfo, uplink.wake
    )
    numbers = {int(p.nozzle[1:3]) for p in cfg.pulses}
    for port in ports:
        if port.number in numbers:
            port.sink.second_source = pulses
    return pulses


def make_leds(
    cfg: Config, ports: Sequence[Port], store_ok: Callable[[], bool], uplink: Uplink
) -> LedTask | None:
    """The run / network LED task when ``[leds]`` names any (SPEC D12)."""
    from collector.device.leds import Health, LedTask, SysfsLed

    leds = cfg.leds
    if leds.run is None and leds.network is None:
        return None

    def health() -> Health:
        ports_ok = all(p.stats.online for p in ports)
        return Health(ports_ok, store_ok(), uplink.stats.connected)

    return LedTask(
        None if leds.run is None else SysfsLed(leds.run),
        None if leds.network is None else SysfsLed(leds.network),
        health,
    )
