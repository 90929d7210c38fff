"""What a command body must be before its signature can be checked.

The signature covers the canonical JSON of the body (platform-interface.md
"Commands"), so a body without one — a float, a lone surrogate, nesting
deep enough to exhaust the stack — cannot be verified and is refused with
a message naming what and where (``float at $.args.n``). Messages and ids
that go back in a reply or into a log line are valid Unicode: the store
and the platform read canonical JSON only.
"""

from __future__ import annotations

from typing import Any

#: Deepest nesting of a command body ($ is 1). ``config.set``'s patch is the
#: deepest honest one (about 5); canonical JSON of a far deeper one would
#: recurse out of the stack.
MAX_BODY_DEPTH = 32

#: Longest error message quoting a sender's bytes (a path into a body can
#: be long).
MAX_MESSAGE_CHARS = 200

#: Characters of one key quoted in a path.
MAX_KEY_CHARS = 40


def not_canonical(body: Any) -> str | None:
    """Why ``body`` (as JSON parsed it) has no canonical JSON, naming the
    first place in document order, or None when it has one."""
    todo: list[tuple[Any, str, int]] = [(body, "$", 1)]
    while todo:
        value, path, depth = todo.pop()
        if depth > MAX_BODY_DEPTH:
            return f"nested deeper than {MAX_BODY_DEPTH} at {path}"
        if isinstance(value, float):
            return f"float at {path}: a number that is not an integer travels as a string"
        if isinstance(value, str):
            if not valid_unicode(value):
                return f"lone surrogate at {path}: not Unicode"
        elif isinstance(value, dict):
            children = []
            for key, item in value.items():
                where = f"{path}.{printable(key)[:MAX_KEY_CHARS]}"
                if not valid_unicode(key):
                    return f"lone surrogate in the key {where}: not Unicode"
                children.append((item, where, depth + 1))
            todo.extend(reversed(children))
        elif isinstance(value, list):
            todo.extend(
                reversed([(item, f"{path}[{i}]", depth + 1) for i, item in enumerate(value)])
            )
    return None


def valid_unicode(text: str) -> bool:
    """False when ``text`` holds a lone surrogate (JSON's ``\\ud800`` escape)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def printable(text: str) -> str:
    """``text`` as valid Unicode, a lone surrogate escaped."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def bounded(text: str) -> str:
    """:func:`printable`, at most :data:`MAX_MESSAGE_CHARS`."""
    text = printable(text)
    return text if len(text) <= MAX_MESSAGE_CHARS else text[: MAX_MESSAGE_CHARS - 1] + "…"
