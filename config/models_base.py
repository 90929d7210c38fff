"""What every config model shares: the strict model config and located errors.

config/models.py and its parts (config/models_*.py) build on these: unknown
keys are errors, nothing is coerced, and a cross-field check reports the key
to fix (``ports.1.number``) with the reason as the message, verbatim.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import ConfigDict, ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError

#: Shared by every model: unknown keys are errors, no type coercion, and no
#: inf/nan (TOML allows them; no duration or count here may be either).
_MODEL_CONFIG = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

#: Station codes are assigned by the regulator; 64 bounds the field in records.
STATION_MAX_CHARS = 64
#: TCP port range.
TCP_PORT_MIN, TCP_PORT_MAX = 1, 65535


def _invalid(reason: str) -> PydanticCustomError:
    """An error whose message is ``reason`` verbatim (it may contain braces)."""
    return PydanticCustomError("invalid", "{reason}", {"reason": reason})


#: (location below the validated model, reason, bad input)
_LocatedError = tuple[tuple[str | int, ...], str, Any]


def _fail(
    errors: Sequence[_LocatedError],
    other: ValidationError | None = None,
    nested: Sequence[tuple[tuple[str | int, ...], ValidationError]] = (),
) -> ValidationError:
    """Errors at locations below the validated value, e.g. ``("ports", 1, "number")``.

    pydantic prefixes the location of the value being validated, so the
    reported key is the one to fix, not the list that holds it. ``other``:
    errors found by the ordinary validation, reported first; ``nested``:
    errors of a separately validated part, each located below its prefix
    (a port's protocol options below ``("sinopec",)``).
    """
    details = _details(other, ()) if other else []
    for prefix, exc in nested:
        details += _details(exc, prefix)
    details += [
        InitErrorDetails(type=_invalid(msg), loc=loc, input=value) for loc, msg, value in errors
    ]
    return ValidationError.from_exception_data("Config", details)


def _details(exc: ValidationError, prefix: tuple[str | int, ...]) -> list[InitErrorDetails]:
    details: list[InitErrorDetails] = []
    for err in exc.errors(include_url=False):
        loc = (*prefix, *err["loc"])
        if err["type"] == "invalid":
            details.append(InitErrorDetails(type=_invalid(err["msg"]), loc=loc, input=err["input"]))
        else:
            details.append(
                InitErrorDetails(
                    type=err["type"], loc=loc, input=err["input"], ctx=err.get("ctx", {})
                )
            )
    return details


def _reject_non_int(value: Any) -> Any:
    # Literal[1, 2] accepts True and 1.0 even in strict mode (they compare equal).
    if isinstance(value, bool):
        raise _invalid(f"expected an integer, got {str(value).lower()}")
    if not isinstance(value, int):
        raise _invalid(f"expected an integer, got {value!r}")
    return value
