"""Tests marked ``slow`` (the heavy variants: 50 sessions x 1,000 lock rounds, long fuzz
runs) are skipped unless asked for with ``-m slow``, so the default ``pytest`` run of the
whole suite stays bounded. Only this directory's tests are touched."""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if "slow" in (config.getoption("markexpr") or ""):
        return
    skip = pytest.mark.skip(reason="slow: run with -m slow")
    for item in items:
        if item.get_closest_marker("slow") and HERE in Path(str(item.path)).parents:
            item.add_marker(skip)
