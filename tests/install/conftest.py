"""Installing into a temp HOME (never the real ~/.claude, ~/.codex…), through the real CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from slm_mesh.config import Settings
from tests import outside
from tests.wire import broker_env

ROOT = Path(__file__).resolve().parents[2]
# ../shared/schemas beside the project (or beside the folder of worktrees it sits in).
SCHEMA_DIRS = [ROOT.parent / "shared" / "schemas", ROOT.parent.parent / "shared" / "schemas"]


def schema(name: str) -> dict[str, Any]:
    """A published schema of an agent's configuration (test data, see its README)."""
    for folder in SCHEMA_DIRS:
        if (folder / name).exists():
            loaded: dict[str, Any] = json.loads((folder / name).read_text())
            return loaded
    reason = f"{name} is not in ../shared/schemas (the published agents' schemas, test data)"
    if outside.in_ci():
        pytest.fail(f"CI=true and {reason}", pytrace=False)
    pytest.skip(reason)


def validate(document: Any, name: str) -> None:
    import jsonschema

    spec = schema(name)
    jsonschema.validators.validator_for(spec)(spec).validate(document)


Run = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def home(tmp_short: Path) -> Path:
    path = tmp_short / "home"
    path.mkdir()
    return path


@pytest.fixture
def repo(tmp_short: Path) -> Path:
    path = tmp_short / "repo"
    path.mkdir()
    subprocess.run(["git", "init", "-q", "-b", "main", str(path)], check=True)
    return path


@pytest.fixture
def slm(settings: Settings, home: Path, repo: Path) -> Run:
    """``slm-mesh ARGS`` with HOME in the temp dir, run in the repository."""

    def run(*args: str, ok: bool = True, **env: str) -> subprocess.CompletedProcess[str]:
        full = {**broker_env(settings), "HOME": str(home), **env}
        for name in ("CLAUDE_CONFIG_DIR", "CODEX_HOME"):
            if name not in env:
                full.pop(name, None)
        done = subprocess.run(
            [sys.executable, "-m", "slm_mesh", *args],
            env=full,
            cwd=repo,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if ok:
            assert done.returncode == 0, (done.returncode, done.stdout, done.stderr)
        return done

    return run
