"""Tool arguments: what an agent clearly means is taken, the rest refused by name."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from slm_mesh.mcp_server.args import Args, BadArgument


def test_null_and_absent_are_the_same() -> None:
    args = Args({"to": None, "limit": None})
    assert args.text("to") is None
    assert args.integer("limit") is None
    assert args.flag("mark_read", True) is True
    assert args.given("to") and not args.given("from")


def test_numbers_may_come_as_strings_and_text_as_numbers() -> None:
    args = Args({"limit": "20", "ttl": "1.5", "key": 2.1, "mark_read": "false"})
    assert args.integer("limit") == 20
    assert args.number("ttl") == 1.5
    assert args.text("key") == "2.1"
    assert args.flag("mark_read", True) is False


@pytest.mark.parametrize(
    ("raw", "read"),
    [
        ({"limit": "many"}, lambda a: a.integer("limit")),
        ({"limit": 2.5}, lambda a: a.integer("limit")),
        ({"limit": 0}, lambda a: a.integer("limit", minimum=1)),
        ({"limit": True}, lambda a: a.integer("limit")),
        ({"mode": "sole"}, lambda a: a.choice("mode", ("exclusive", "shared"))),
        ({"types": [1]}, lambda a: a.texts("types")),
        ({"to": ""}, lambda a: a.required_text("to")),
    ],
)
def test_a_wrong_argument_is_refused_by_name(
    raw: dict[str, object], read: Callable[[Args], object]
) -> None:
    name = next(iter(raw))
    with pytest.raises(BadArgument, match=name):
        read(Args(raw))
