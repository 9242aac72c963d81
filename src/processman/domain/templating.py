"""``${NAME}``, ``${NAME:-default}`` and ``$$`` in config strings."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from processman.domain.errors import TemplateError

if TYPE_CHECKING:
    from collections.abc import Callable

# "$$", "${NAME}", "${NAME:-default}", or a "$" before "{" or a name that is none of
# them (an error: "$NAME" and "${NAME" are typos). Any other "$" is literal.
_TOKEN = re.compile(r"\$(?:\$|\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}|(?=[{A-Za-z_]))")


def expand(text: str, lookup: Callable[[str], str | None]) -> str:
    """Expand the templates in ``text``; ``lookup`` returns None for an undefined name.

    ``$NAME`` and a malformed ``${...`` are errors, so that a typo does not pass
    through silently; a ``$`` before anything else is kept as it is.

    Raises:
        TemplateError: for an undefined name without default, or a stray ``$``.
    """
    if "$" not in text:
        return text

    def replace(match: re.Match[str]) -> str:
        whole = match.group(0)
        if whole == "$$":
            return "$"
        name = match.group(1)
        if name is None:
            raise TemplateError(
                "$",
                f"stray '$' at {text[match.start() : match.start() + 12]!r}: "
                "write ${NAME}, ${NAME:-default} or $$ for a literal $",
            )
        value = lookup(name)
        if value is not None:
            return value
        default = match.group(2)
        if default is not None:
            return default
        raise TemplateError(name)

    return _TOKEN.sub(replace, text)
