"""The collector daemon: supervisor, port tasks, nozzle model, CLI."""

from __future__ import annotations


def version() -> str:
    """The installed release's version (``0+unknown`` when run from a bare tree)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("forecourt-collector")
    except PackageNotFoundError:
        return "0+unknown"
