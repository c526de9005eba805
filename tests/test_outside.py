"""A missing outside tool skips its test with advice, and fails it under CI."""

from __future__ import annotations

import pytest

from tests import outside


@pytest.fixture
def missing_tool(monkeypatch: pytest.MonkeyPatch) -> str:
    tool = outside.Tool(
        "nothing-here", "a test of the rule", "apt-get install nothing", lambda: None
    )
    monkeypatch.setitem(outside.TOOLS, tool.name, tool)
    return tool.name


def test_a_missing_tool_skips_with_how_to_get_it(
    missing_tool: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="get it with: apt-get install nothing"):
        outside.require(missing_tool)


@pytest.mark.parametrize("value", ["true", "1", "TRUE"])
def test_a_missing_tool_fails_under_ci(
    missing_tool: str, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("CI", value)
    with pytest.raises(pytest.fail.Exception, match="CI=true and nothing-here"):
        outside.require(missing_tool)


def test_a_tool_that_is_there_gives_its_path(monkeypatch: pytest.MonkeyPatch) -> None:
    tool = outside.Tool("here", "a test", "nothing", lambda: "/usr/bin/here")
    monkeypatch.setitem(outside.TOOLS, tool.name, tool)
    monkeypatch.setenv("CI", "true")
    assert outside.require("here") == "/usr/bin/here"
