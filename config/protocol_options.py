"""A port's ``[ports.<protocol>]`` table, validated against its protocol's options.

Each protocol package declares its driver's keyword options as a frozen
stdlib dataclass (``ProtocolDescriptor.options``), bounds as
``annotated_types`` metadata, so a new protocol adds no line to ``config/``.
Here, in the validating step only, that dataclass becomes a strict pydantic
model with the config's own rules (unknown keys are errors, nothing is
coerced), and the validated table becomes an instance of the dataclass.

Why a model and not ``TypeAdapter(dataclass)``: a strict TypeAdapter over a
stdlib dataclass accepts only an instance of it, never a table; a lax one
would coerce ``"3"`` to 3, which no other config key allows.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from functools import cache
from typing import Any

from pydantic import BaseModel, Field, create_model

from config.models_base import _MODEL_CONFIG


@cache
def options_model(cls: type) -> type[BaseModel]:
    """The strict model of options dataclass ``cls``: same fields, types, defaults."""
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls.__qualname__} is not a dataclass (a protocol's options)")
    hints = typing.get_type_hints(cls, include_extras=True)
    fields: dict[str, Any] = {}
    for item in dataclasses.fields(cls):
        if item.default is not dataclasses.MISSING:
            default: Any = item.default
        elif item.default_factory is not dataclasses.MISSING:
            default = Field(default_factory=item.default_factory)
        else:
            default = ...  # required
        fields[item.name] = (hints[item.name], default)
    model: type[BaseModel] = create_model(
        cls.__name__, __config__=_MODEL_CONFIG, __doc__=cls.__doc__, **fields
    )
    return model


def validate_options(cls: type, table: Mapping[str, Any] | Any) -> Any:
    """``table`` (the TOML table, ``{}`` when absent) as an instance of ``cls``.

    Raises pydantic's ValidationError located below the table, or ValueError
    from the dataclass's own ``__post_init__`` checks (a cross-field rule).
    """
    model = options_model(cls)
    validated = model.model_validate(table)
    return cls(**{name: getattr(validated, name) for name in type(validated).model_fields})
