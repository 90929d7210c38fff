"""``forecourt`` — the command line: run the daemon, check a config.

Starts fast: pydantic (~100 ms) and the daemon's modules are imported only
inside the subcommands that need them, so ``--version`` and usage errors
answer at once on a 300 MHz gateway.

``config check`` and ``run`` validate in one step: the models, then what the
config names outside itself (collector/remote/config_env.py) — what ``check``
accepts, ``run`` can use.

Exit status (docs/cli.md, one table for every command): 0 ok, 1 the daemon
could not start (its own line), 2 bad usage or an invalid config (one
``key.path: reason`` line per error), 70 an internal error (one line, never
a traceback), 75 a clean stop to be started again; the technician commands
add theirs (collector/tools/techcli.py).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO, cast

from collector import set_version, version

if TYPE_CHECKING:
    import argparse

    from config.models import Config

PROG = "forecourt"
#: argparse's own status for usage errors; invalid configs use it too.
EXIT_USAGE = 2
#: A bug (EX_SOFTWARE): one line naming the exception, not a traceback.
EXIT_INTERNAL = 70
#: A clean stop to be started again (EX_TEMPFAIL; collector/daemon.py).
EXIT_RESTART = 75
#: Set to print the traceback of an internal error (for a bug report).
TRACEBACK_ENV = "FORECOURT_TRACEBACK"
#: The option the validating step adds when it execs the daemon
#: (config/handoff.py ``FD_OPTION``): that argv is this program's own, so it
#: is read without argparse and the technician commands (≈ 0.3 MB the daemon
#: would keep for nothing).
VALIDATED_FD = "--validated-fd"


def main(argv: list[str] | None = None) -> int:
    """Entry point; ``raise SystemExit(main())``."""
    given = sys.argv[1:] if argv is None else list(argv)
    if given[:1] == ["run"] and VALIDATED_FD in given:
        # The daemon: its own failures are logged with their traceback.
        return _run_validated(given)
    try:
        return _command(argv)
    except KeyboardInterrupt:
        return 130  # Ctrl-C: the shell's own status for SIGINT, quietly
    except Exception as exc:
        import os

        if os.environ.get(TRACEBACK_ENV):
            raise
        print(
            f"{PROG}: internal error: {type(exc).__name__}: {exc}"
            f" (set {TRACEBACK_ENV}=1 for the traceback)",
            file=sys.stderr,
        )
        return EXIT_INTERNAL


def _command(argv: list[str] | None) -> int:
    from collector.tools import techcli

    parser, config_parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, usage errors: return, don't raise
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    if args.command == "config" and args.config_command == "check":
        return _config_check(args.file, args.set)
    if args.command == "run":
        return _run(args.config, args.set)
    if args.command == "decode":
        from collector.tools.decode import main as decode_main
        from collector.tools.decode import main_evidence

        if args.evidence is not None:
            return main_evidence(args.evidence, args.protocol)
        if args.protocol is None or not args.bytes:
            print(f"{PROG} decode: give --protocol and BYTES, or --evidence FILE", file=sys.stderr)
            return EXIT_USAGE
        return decode_main(args.protocol, args.bytes)
    if args.command == "verify":
        return _verify(args.store, args.config)
    if args.command == "detect":
        from collector.detect.cli import run as detect

        return detect(args)
    if args.command in techcli.NAMES:
        return techcli.run(args)
    (config_parser if args.command == "config" else parser).print_help(sys.stderr)
    return EXIT_USAGE


def _parser() -> tuple[argparse.ArgumentParser, argparse.ArgumentParser]:
    """The top-level parser and the ``config`` one (for its help)."""
    import argparse

    from collector.tools import techcli

    class _VersionAction(argparse.Action):
        """``--version``, looked up only when asked (importlib.metadata is ≈ 10 ms)."""

        def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
            super().__init__(option_strings, dest, nargs=0, help="show the version and exit")

        def __call__(self, parser: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> None:
            print(f"{PROG} {version()}")  # stdout, as argparse's own version action
            parser.exit()

    parser = argparse.ArgumentParser(
        prog=PROG, description="Fuel-station data collector (dispensers → regulator platform)."
    )
    parser.add_argument("--version", action=_VersionAction)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    set_help = "override one key, e.g. uplink.host=10.0.0.5 or ports.0.baudrate=4800 (repeatable)"
    run = commands.add_parser("run", help="run the collector daemon")
    run.add_argument("--config", required=True, type=Path, metavar="FILE", help="TOML config")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help=set_help)

    config = commands.add_parser("config", help="config file tools")
    config_commands = config.add_subparsers(dest="config_command", metavar="COMMAND")
    check = config_commands.add_parser("check", help="validate a config file")
    check.add_argument("file", type=Path, metavar="FILE")
    check.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help=set_help)

    decode = commands.add_parser(
        "decode",
        help="decode captured bytes frame by frame (JSON lines; exit 1 if any is rejected)",
    )
    decode.add_argument(
        "--protocol",
        choices=_Describable(),
        metavar="NAME",
        help="one of: %(choices)s (with --evidence: the export's own by default)",
    )
    decode.add_argument(
        "--evidence",
        type=Path,
        metavar="FILE",
        help="a raw-log export (forecourt capture export) or evidence.fetch parts, - for stdin",
    )
    decode.add_argument(
        "bytes", nargs="*", metavar="BYTES", help="hex (FA 00 01 …), a TLS text frame, or -"
    )
    _add_verify(commands)
    techcli.register(commands)
    from collector.detect.cli import register as add_detect

    add_detect(commands)
    return parser, config


class _Describable:
    """``decode --protocol``'s choices, from the protocol registry when argparse
    checks or shows them: a protocol installed through an entry point counts,
    and building the parser imports no protocol (every command builds it)."""

    def __contains__(self, name: object) -> bool:
        return name in self._names()

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())

    @staticmethod
    def _names() -> list[str]:
        from protocols import describable

        return describable()


def _add_verify(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    verify = commands.add_parser(
        "verify", help="check the store's per-nozzle order chains (exit 1 if any is broken)"
    )
    where = verify.add_mutually_exclusive_group(required=True)
    where.add_argument("--store", type=Path, metavar="PATH", help="SQLite store file")
    where.add_argument("--config", type=Path, metavar="FILE", help="TOML config (its store.path)")


def _verify(store: Path | None, config_path: Path | None) -> int:
    from collector.tools.verify import verify_store

    if store is None:
        assert config_path is not None  # argparse: one of the two is required
        config = _load(config_path, [], sys.stderr)
        if config is None:
            return EXIT_USAGE
        store = config.store.path
    return verify_store(store, sys.stdout, sys.stderr)


def _load(path: Path, overrides: Sequence[str], out: TextIO) -> Config | None:
    """The validated config, or None after printing one line per error to ``out``."""
    from collector.remote.config_env import config_errors

    errors = config_errors(path, overrides)
    if isinstance(errors, list):
        for line in errors:
            print(line, file=out)
        return None
    return errors


def _config_check(path: Path, overrides: Sequence[str]) -> int:
    if _load(path, overrides, sys.stdout) is None:
        return EXIT_USAGE
    print(f"{path}: ok")
    return 0


def _run(path: Path, overrides: Sequence[str]) -> int:
    """Validate in this short-lived process, then exec the daemon in its place.

    The daemon gets the validated config's views through an fd and never
    imports pydantic (≈ 18 MB, ≈ 150 ms: docs/performance.md, "Footprint").
    """
    from collector.remote.config_files import settle_at_start

    # Before the file is read: a config.set cut short by a stop, or whose
    # confirm window passed while the box was off, is finished or undone.
    try:
        _, done = settle_at_start(path)
    except OSError as exc:
        print(f"forecourt: pending config change not settled: {exc}", file=sys.stderr)
    else:
        if done == "reverted":
            print(f"forecourt: {path}: unconfirmed change reverted to .prev", file=sys.stderr)
    argv = ["-m", "collector", "run", "--config", str(path)]
    for item in overrides:
        argv += ["--set", item]  # shown by ps; already applied
    from config import validated_cache
    from config.handoff import exec_payload, payload_of, views_of_payload
    from config.toml_read import FileUnreadable, read_bounded

    # The file as it is now (after the settle): the cache key and, on a miss,
    # what is validated are the same bytes (pydantic only on a miss).
    try:
        raw = read_bounded(path)
    except FileUnreadable as exc:
        return _refuse_start(path, [str(exc)])
    cache = validated_cache.directory()
    key = None if cache is None else validated_cache.key(raw, overrides, version())
    payload = None if cache is None or key is None else validated_cache.load(cache, key)
    if payload is not None:
        # The file is the one validated before; what it names (key files, the
        # store, devices) may have changed since: checked at every start.
        from collector.remote.config_env import check_environment

        problems = check_environment(cast("Config", views_of_payload(payload)))
        if problems:
            return _refuse_start(path, problems)
    else:
        from collector.remote.config_env import config_errors

        config = config_errors(path, overrides, raw)
        if isinstance(config, list):
            return _refuse_start(path, config)
        payload = payload_of(config, version())
        if cache is not None and key is not None:
            validated_cache.store(cache, key, payload)
    exec_payload(payload, argv)


def _refuse_start(path: Path, lines: Sequence[str]) -> int:
    """A config a start cannot use: its lines on stderr (the journal)."""
    for line in lines:
        print(line, file=sys.stderr)
    from collector.remote.config_change import revert_failed_start

    # A config.set whose config cannot start is undone now (exit 75: the
    # unit starts the previous one), not left to fail until its deadline.
    if revert_failed_start(path, "; ".join(lines)):
        return EXIT_RESTART
    return EXIT_USAGE


def _overrides(argv: list[str]) -> list[str]:
    """The ``--set`` items of the exec'd argv (config.set validates with them too)."""
    return [argv[i + 1] for i, arg in enumerate(argv[:-1]) if arg == "--set"]


def _run_validated(argv: list[str]) -> int:
    """The daemon, exec'd by :func:`_run` with ``--validated-fd N`` (config/handoff.py)."""
    try:
        path = Path(argv[argv.index("--config") + 1])
        validated_fd = int(argv[argv.index(VALIDATED_FD) + 1])
    except (ValueError, IndexError):
        print(f"{PROG}: {VALIDATED_FD} needs --config FILE and an fd number", file=sys.stderr)
        return EXIT_USAGE
    from collector.daemon import run_daemon
    from config.handoff import read_views

    try:
        views, known_version = read_views(validated_fd)
    except (OSError, ValueError, TypeError, EOFError) as exc:
        print(f"forecourt: cannot start: --validated-fd {validated_fd}: {exc}", file=sys.stderr)
        return 1
    set_version(known_version)
    return run_daemon(cast("Config", views), path, _overrides(argv))
