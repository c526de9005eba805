from collections.abc import Iterator
from pathlib import Path

import pytest

from slm_mesh.config import Settings
from tests.wire import make_settings, short_tmp


@pytest.fixture
def tmp_short() -> Iterator[Path]:
    with short_tmp() as d:
        yield d


@pytest.fixture
def settings(tmp_short: Path) -> Settings:
    return make_settings(tmp_short)


@pytest.fixture(autouse=True)
def _no_user_mesh(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test may touch ~/.slm-mesh: point every default at a temp dir."""
    monkeypatch.setenv("SLM_MESH_DATA_DIR", str(tmp_path / "default-data-dir"))
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    monkeypatch.delenv("SLM_MESH_SOCKET", raising=False)
