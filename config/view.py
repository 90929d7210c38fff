"""The validated config as the daemon holds it: frozen attribute views, no pydantic.

pydantic and the models cost ≈ 18 MB of RSS and ≈ 150 ms of import on the
development VM (docs/performance.md, "Footprint"), more than any other part
of the daemon. So ``forecourt run`` validates in a short-lived step
(config/handoff.py): the models check the file, :func:`config.handoff.to_view`
turns the validated model into these views, and the daemon that is exec'd
in its place never imports pydantic.

A view has the model's attribute API, generically for every field of every
model (no per-field code): ``config.uplink.host``, ``config.ports[0].options``
(a protocol's options dataclass becomes a view of its fields too),
``Path`` fields as ``Path``, secrets as :class:`Secret` with
``get_secret_value()``, the model's derived properties through the
pydantic-free mixins of config/derived.py (``config.device.tzinfo``), and
``model_dump()`` with the model's field serializers applied (the parent
recorded their output). Views are immutable, like the running config.
"""

from __future__ import annotations

import json
from typing import Any

#: What a secret prints as (pydantic's SecretStr shows the same).
MASK = "**********"


class Secret:
    """A validated secret: printed masked, read with ``get_secret_value()``."""

    __slots__ = ("_value",)
    _value: Any

    def __init__(self, value: Any) -> None:
        object.__setattr__(self, "_value", value)

    def get_secret_value(self) -> Any:
        return self._value

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("a config secret is read-only")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __repr__(self) -> str:
        return f"Secret('{MASK}')"

    def __str__(self) -> str:
        return MASK

    def __reduce__(self) -> tuple[Any, ...]:
        return (Secret, (self._value,))


class ConfigView:
    """One validated model's fields as read-only attributes."""

    # Set per view class by _view_class; instances keep their own fields.
    __model_name__ = "ConfigView"

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{self.__model_name__} is read-only (the running config)")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{self.__model_name__} is read-only (the running config)")

    @property
    def view_fields(self) -> dict[str, Any]:
        """Field name → value, in the model's order."""
        return {name: self.__dict__[name] for name in self.__dict__["__names__"]}

    def model_dump(self) -> dict[str, Any]:
        """As the model's ``model_dump()`` (python mode, its serializers applied)."""
        whole = self.__dict__["__dumped__"]
        if whole is not None:
            dumped: dict[str, Any] = _plain(whole)
            return dumped
        serialized = self.__dict__["__serialized__"]
        return {
            name: _plain(serialized.get(name, value)) for name, value in self.view_fields.items()
        }

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, ConfigView)
            and other.__model_name__ == self.__model_name__
            and other.view_fields == self.view_fields
        )

    # Equal by value like the models, and like them unhashable (a hash by
    # identity would put two equal views in a set twice).
    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={v!r}" for k, v in self.view_fields.items())
        return f"{self.__model_name__}({inner})"

    def __reduce__(self) -> tuple[Any, ...]:
        d = self.__dict__
        mixins = tuple(c for c in type(self).__mro__[1:] if c not in (ConfigView, object))
        return (
            make_view,
            (
                self.__model_name__,
                mixins,
                self.view_fields,
                d["__serialized__"],
                d["__redacted__"],
                d["__dumped__"],
            ),
        )


_CLASSES: dict[tuple[str, tuple[type, ...]], type[ConfigView]] = {}


def _view_class(name: str, mixins: tuple[type, ...]) -> type[ConfigView]:
    key = (name, mixins)
    if key not in _CLASSES:
        _CLASSES[key] = type(name, (*mixins, ConfigView), {"__model_name__": name})
    return _CLASSES[key]


def make_view(
    name: str,
    mixins: tuple[type, ...],
    fields: dict[str, Any],
    serialized: dict[str, Any] | None = None,
    redacted: str | None = None,
    dumped: dict[str, Any] | None = None,
) -> ConfigView:
    """A view of model ``name``; ``mixins``: its pydantic-free bases (config/derived.py).

    ``serialized``: the output of the model's field serializers, by field;
    ``redacted``: for the root, ``dump_redacted`` of the model as JSON text;
    ``dumped``: the model's whole ``model_dump()`` when a model serializer
    shapes it (its keys need not be the fields).
    """
    view = object.__new__(_view_class(name, mixins))
    d = view.__dict__
    d.update(fields)
    d["__names__"] = tuple(fields)
    d["__serialized__"] = serialized or {}
    d["__redacted__"] = redacted
    d["__dumped__"] = dumped
    return view


def _plain(value: Any) -> Any:
    if isinstance(value, ConfigView):
        return value.model_dump()
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    return value


def dump_redacted(config: Any) -> dict[str, Any]:
    """The running config as JSON-able data, every secret ``***`` (``config.get``).

    For a view: what the validating step computed with the models
    (config.loader.dump_redacted), so the two can never disagree. For a model
    (tests, tools): config.loader's own.
    """
    if isinstance(config, ConfigView):
        text = config.__dict__["__redacted__"]
        if text is None:
            raise ValueError("this view carries no redacted dump (only the root does)")
        result: dict[str, Any] = json.loads(text)
        return result
    from config.loader import dump_redacted as dump_model

    return dump_model(config)
