"""Compact JSON for the processes that start on every agent event (the ``slm-mesh mcp``
launcher, the hooks): ``_json``, the C accelerator :mod:`json` itself uses, without
importing :mod:`json`, whose imports (``re``, ``codecs``…) would cost them more than the
rest of their work. Where ``_json`` is missing, :mod:`json` does it.

Nothing here imports beyond ``sys``-level builtins and ``_json``: not even :mod:`os`.
"""

TYPE_CHECKING = False  # not typing's: importing typing alone costs ~10 ms here

if TYPE_CHECKING:
    from typing import Any


def _refuse(value: object) -> object:
    raise TypeError(f"not JSON: {type(value).__name__}")


class _ScanContext:
    """What ``_json.make_scanner`` reads off a JSONDecoder."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int

    @staticmethod
    def parse_constant(name: str) -> object:
        raise ValueError(f"{name} is not allowed")


try:
    import _json

    _encoder = _json.make_encoder(
        None, _refuse, _json.encode_basestring_ascii, None, ":", ",", False, False, False
    )
    _scanner = _json.make_scanner(_ScanContext())  # type: ignore[arg-type]

    def encode(message: "Any") -> bytes:
        """One wire line: compact JSON, ASCII, ending in a newline."""
        return "".join(_encoder(message, 0)).encode() + b"\n"

    def loads(data: bytes) -> "Any":
        """The one JSON value in ``data`` (UTF-8; blanks around it allowed).

        Raises:
            ValueError: not exactly one JSON value.
        """
        text = data.decode()
        start = len(text) - len(text.lstrip())
        try:
            value, end = _scanner(text, start)
        except StopIteration:  # not JSON at all
            raise ValueError("not JSON") from None
        if text[end:].strip():
            raise ValueError("more than one JSON value")
        return value

except (ImportError, AttributeError):  # pragma: no cover - CPython always has _json
    import json

    def encode(message: "Any") -> bytes:
        return json.dumps(message, separators=(",", ":")).encode() + b"\n"

    def loads(data: bytes) -> "Any":
        return json.loads(data)


def decode(line: bytes) -> "dict[str, Any] | None":
    """The object on one line, or None if it is not one."""
    try:
        value = loads(line)
    except ValueError:  # (UnicodeDecodeError is one)
        return None
    return value if isinstance(value, dict) else None
