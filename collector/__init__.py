"""The collector daemon, in rooms (docs/architecture.md).

The top layer: the builders here make the parts from the config and run
them (daemon.py, assembly.py, cli.py); the rooms hold the parts, each
importing only its own rank and below: device/ (the box), station/ (the
data path from a line to the store), remote/ and ota/ (what the platform
changes), tools/ and web/ (what a technician uses). logs.py, retry.py and
parts.py are shared by every room. May import every layer below (records/,
protocols/, config/, buffer/, uplink/), never hil/.
"""

from __future__ import annotations

#: The version found once per process; the daemon gets it from the validating
#: step (collector/cli.py) so that it never imports importlib.metadata.
_version: str | None = None


def version() -> str:
    """The installed release's version (``0+unknown`` when run from a bare tree)."""
    global _version
    if _version is None:
        from importlib.metadata import PackageNotFoundError
        from importlib.metadata import version as dist_version

        try:
            _version = dist_version("forecourt-collector")
        except PackageNotFoundError:
            _version = "0+unknown"
    return _version


def set_version(known: str) -> None:
    """The version as the validating step found it (same install, an instant before)."""
    global _version
    _version = known
