"""Hand the validated config from the short-lived validating step to the daemon.

``forecourt run`` validates with the pydantic models (config/loader.py),
then :func:`exec_daemon` writes the validated config's views (config/view.py)
into an anonymous in-memory file (memfd) and execs the same command with
``--validated-fd N``: the same PID (systemd's main process, ``Type=notify``),
a fresh interpreter that never imports pydantic, and no second reading of
the TOML that could disagree with what was validated. :func:`read_views`
is the daemon's side.

The payload is a pickle: it holds only plain values, ``Path``, :class:`Secret`
and views (whatever type a new field has, without per-field code), and it
comes from this same program an instant earlier through an fd nobody else
holds — never from the network or a file.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NoReturn

from config.view import ConfigView, Secret, make_view

if TYPE_CHECKING:
    from config.models import Config

#: Packages whose types must not be in the views (the daemon would import them).
_PYDANTIC_PACKAGES = frozenset({"pydantic", "pydantic_core"})

#: The hidden ``forecourt run`` option that carries the memfd's number.
FD_OPTION = "--validated-fd"


def to_view(value: Any, redacted: str | None = None) -> Any:
    """A validated model (and everything inside it) as views, generically."""
    from pydantic import BaseModel, SecretBytes, SecretStr

    if isinstance(value, BaseModel):
        cls = type(value)
        names = [*cls.model_fields, *cls.model_computed_fields]
        fields = {name: to_view(getattr(value, name)) for name in names}
        decorators = cls.__pydantic_decorators__
        serialized: dict[str, Any] = {}
        custom = {f for d in decorators.field_serializers.values() for f in d.info.fields}
        if custom:
            dumped = value.model_dump(include=custom)
            serialized = {name: to_view(dumped[name]) for name in custom if name in dumped}
        # A model serializer shapes the whole dump (a port's options under its
        # protocol's name): the view keeps that dump as it is.
        whole = to_view(value.model_dump()) if decorators.model_serializers else None
        mixins = tuple(
            c for c in cls.__mro__[1:] if not issubclass(c, BaseModel) and c is not object
        )
        return make_view(cls.__name__, mixins, fields, serialized, redacted, whole)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        # A protocol's options: a view of its fields, so the daemon never
        # imports the module that declares them (nor annotated_types).
        items = {f.name: to_view(getattr(value, f.name)) for f in dataclasses.fields(value)}
        return make_view(type(value).__name__, (), items)
    if isinstance(value, SecretStr | SecretBytes):
        return Secret(value.get_secret_value())
    if isinstance(value, list | tuple):
        return type(value)(to_view(item) for item in value)
    if isinstance(value, dict):
        return {key: to_view(item) for key, item in value.items()}
    if type(value).__module__.partition(".")[0] in _PYDANTIC_PACKAGES:
        # e.g. HttpUrl: unpickling it would import pydantic into the daemon.
        raise TypeError(
            f"a config value of pydantic type {type(value).__qualname__} cannot reach the"
            " daemon: use a plain type (str, int, Path, …) or convert it here in to_view"
        )
    return value


def views_of(config: Config) -> ConfigView:
    """The root view of a validated ``Config``, carrying its redacted dump."""
    import json

    from config.loader import dump_redacted

    view = to_view(config, json.dumps(dump_redacted(config), separators=(",", ":")))
    assert isinstance(view, ConfigView)
    return view


def payload_of(config: Config, version: str) -> bytes:
    """The hand-off's bytes: the views of ``config`` and the release's version
    (what config/validated_cache.py keeps between starts)."""
    return pickle.dumps((views_of(config), version), protocol=pickle.HIGHEST_PROTOCOL)


def exec_daemon(config: Config, argv: Sequence[str], version: str) -> NoReturn:
    """Replace this process with ``argv`` + ``--validated-fd N`` (never returns).

    ``version``: the release's, found here so the daemon need not look it up.
    """
    exec_payload(payload_of(config, version), argv)


def exec_payload(payload: bytes, argv: Sequence[str]) -> NoReturn:
    """:func:`exec_daemon` with the hand-off already made (or kept from an
    earlier start of the same config: config/validated_cache.py)."""
    fd = os.memfd_create("forecourt-config", 0)
    with open(fd, "wb", closefd=False) as f:
        f.write(payload)
    os.lseek(fd, 0, os.SEEK_SET)
    os.set_inheritable(fd, True)
    sys.stdout.flush()
    sys.stderr.flush()
    # -X options (e.g. ``-X importtime``) apply to the daemon too.
    xoptions = [f"-X{k}" if v is True else f"-X{k}={v}" for k, v in sys._xoptions.items()]
    os.execv(sys.executable, [sys.executable, *xoptions, *argv, FD_OPTION, str(fd)])


def views_of_payload(payload: bytes) -> ConfigView:
    """The views a payload holds (a kept payload's, checked before the exec)."""
    view, _version = _handoff(pickle.loads(payload))
    return view


def read_views(fd: int) -> tuple[ConfigView, str]:
    """The daemon's side: the views and the version the validating step wrote to
    ``fd`` (closed after)."""
    with os.fdopen(fd, "rb") as f:
        return _handoff(pickle.load(f))


def _handoff(handoff: object) -> tuple[ConfigView, str]:
    match handoff:
        case (ConfigView() as view, str() as version):
            return view, version
    raise TypeError("no validated config")
