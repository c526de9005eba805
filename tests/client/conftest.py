"""Fixtures: a data dir in tmp_path (never ~/.slm-mesh) and the settings that point at it."""

from __future__ import annotations

from pathlib import Path

import pytest

from slm_mesh.config import Settings


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    # Anything that falls back to Settings.from_env() lands here too.
    monkeypatch.setenv("SLM_MESH_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("SLM_MESH_SOCKET", raising=False)
    monkeypatch.delenv("SLM_MESH_PORT", raising=False)
    return tmp_path


@pytest.fixture
def settings(data_dir: Path) -> Settings:
    return Settings(data_dir=data_dir, socket_path=data_dir / "broker.sock")
