"""What every config model shares: the strict model config and located errors.

config/models.py and its parts (config/models_*.py) build on these: unknown
keys are errors, nothing is coerced, and a cross-field check reports the key
to fix (``ports.1.number``) with the reason as the message, verbatim.
"""

from __future__ import annotations

import re
from collections.abc import Hashable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Annotated, Any, TypeVar

from pydantic import AfterValidator, BeforeValidator, ConfigDict, Field, ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError

#: Shared by every model: unknown keys are errors, no type coercion, and no
#: inf/nan (TOML allows them; no duration or count here may be either).
_MODEL_CONFIG = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

#: Station codes are assigned by the regulator; 64 bounds the field in records.
STATION_MAX_CHARS = 64
#: TCP port range.
TCP_PORT_MIN, TCP_PORT_MAX = 1, 65535
#: Linux PATH_MAX is 4096 bytes with the terminating NUL: a longer path fails
#: every system call that takes it.
PATH_MAX_BYTES = 4095
#: A DNS name is at most 253 characters; an IPv6 literal is far shorter.
HOST_MAX_CHARS = 253
#: Host names and addresses: no space, control character or NUL (a NUL makes
#: the resolver raise instead of failing to connect).
_HOST_CHARS = re.compile(r"^[^\x00-\x20\x7f/]+$")


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


def _repeats(values: Iterable[H]) -> Iterator[tuple[int, H]]:
    """``(index, value)`` of each value that stands at an earlier index too."""
    seen: set[H] = set()
    for index, value in enumerate(values):
        if value in seen:
            yield index, value
        seen.add(value)


def _matching(pattern: re.Pattern[str], must: str) -> AfterValidator:
    """Text ``pattern`` matches; else the reason ``"{must}, got 'text'"``."""

    def check(value: str) -> str:
        if not pattern.match(value):
            raise _invalid(f"{must}, got {value!r}")
        return value

    return AfterValidator(check)


def _check_path_text(text: str) -> None:
    if "\x00" in text:
        raise _invalid("a path cannot contain a NUL character")
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > PATH_MAX_BYTES:
        raise _invalid(f"a path is at most {PATH_MAX_BYTES} bytes, got {size}")


def _checked_path(value: Path) -> Path:
    _check_path_text(str(value))
    return value


def _checked_path_text(value: str) -> str:
    _check_path_text(value)
    return value


def _checked_host(value: str) -> str:
    if not _HOST_CHARS.match(value):
        raise _invalid(f"not a host name or address: {value[:40]!r}")
    return value


#: A file path as TOML gives it (a string, read as a Path): no NUL, at most
#: PATH_MAX bytes, so the daemon's system calls fail only for what is on disk.
FilePath = Annotated[Path, Field(strict=False), AfterValidator(_checked_path)]
#: A path kept as text (a device, a socket, a password file), same bounds.
PathText = Annotated[str, Field(min_length=1), AfterValidator(_checked_path_text)]
T = TypeVar("T")
H = TypeVar("H", bound=Hashable)

#: A choice of whole numbers, ``Whole[Literal[7, 8]]``: strict ``Literal``
#: alone takes true and 1.0 (they compare equal), this refuses them.
Whole = Annotated[T, BeforeValidator(_reject_non_int)]
#: A broker's or gauge's host name or address.
HostName = Annotated[
    str, Field(min_length=1, max_length=HOST_MAX_CHARS), AfterValidator(_checked_host)
]
