"""Reading a tool call's arguments, with errors an agent can fix.

The low-level MCP server does not check arguments against the input schemas, and agents
do send ``"5"`` for 5 or ``null`` for "not given": :class:`Args` accepts what is clearly
meant (a numeric string for a number, null as absent) and refuses the rest with
:class:`BadArgument`, whose message names the argument.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


class BadArgument(ValueError):
    """An argument is missing or has the wrong type; the message says which and why."""


class Args:
    """Typed access to one call's arguments (None and absent are the same)."""

    def __init__(self, raw: Mapping[str, Any] | None) -> None:
        self._raw = dict(raw or {})

    def given(self, name: str) -> bool:
        """Whether the call passed ``name`` at all (even as null)."""
        return name in self._raw

    def raw(self, name: str) -> Any:
        return self._raw.get(name)

    def text(self, name: str, *, required: bool = False) -> str | None:
        value = self._raw.get(name)
        if value is None or value == "":
            if required:
                raise BadArgument(f"{name} is required")
            return None
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)
        if not isinstance(value, str):
            raise BadArgument(f"{name} must be a string")
        return value

    def required_text(self, name: str) -> str:
        value = self.text(name, required=True)
        assert value is not None
        return value

    def choice(self, name: str, choices: Sequence[str], default: str | None = None) -> str | None:
        value = self.text(name)
        if value is None:
            return default
        if value not in choices:
            raise BadArgument(f"{name} must be one of {', '.join(choices)}, not {value!r}")
        return value

    def integer(self, name: str, *, minimum: int | None = None) -> int | None:
        value = self._number(name)
        if value is None:
            return None
        if value != int(value):
            raise BadArgument(f"{name} must be a whole number")
        result = int(value)
        if minimum is not None and result < minimum:
            raise BadArgument(f"{name} must be at least {minimum}")
        return result

    def number(self, name: str, *, minimum: float | None = None) -> float | None:
        value = self._number(name)
        if value is not None and minimum is not None and value < minimum:
            raise BadArgument(f"{name} must be at least {minimum:g}")
        return value

    def flag(self, name: str, default: bool) -> bool:
        value = self._raw.get(name)
        if value is None:
            return default
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise BadArgument(f"{name} must be true or false")

    def texts(self, name: str) -> list[str] | None:
        value = self._raw.get(name)
        if value is None:
            return None
        if isinstance(value, str):
            return [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise BadArgument(f"{name} must be a list of strings")
        return list(value)

    def _number(self, name: str) -> float | None:
        value = self._raw.get(name)
        if value is None or value == "":
            return None
        if isinstance(value, bool):
            raise BadArgument(f"{name} must be a number")
        if isinstance(value, int | float):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise BadArgument(f"{name} must be a number")
