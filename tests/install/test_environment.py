"""The variables an MCP server entry hands on from the agent (``install/environment.py``):
every one slm-mesh reads, so that an agent that scrubs its MCP servers' environment
(Codex) still starts ``slm-mesh mcp`` with the settings its hooks see."""

from __future__ import annotations

import re
from pathlib import Path

import slm_mesh
from slm_mesh.install import environment

SOURCES = Path(slm_mesh.__file__).parent
NAME = re.compile(r"SLM_MESH_[A-Z][A-Z0-9_]*")


def read_by_slm_mesh() -> set[str]:
    """Every ``SLM_MESH_*`` name in the package's sources."""
    found: set[str] = set()
    for path in SOURCES.rglob("*.py"):
        found |= set(NAME.findall(path.read_text(encoding="utf-8")))
    return found


def test_the_entry_names_every_variable_slm_mesh_reads() -> None:
    named = set(environment.for_mcp_server())
    read = read_by_slm_mesh()
    assert {"SLM_MESH_DATA_DIR", "SLM_MESH_STORE", "SLM_MESH_PERSON"} <= read  # (it finds them)
    assert read - named == set()
    assert {"XDG_RUNTIME_DIR", "PGPASSFILE", "SLM_MESH_MAX_LINE_BYTES"} <= named


def test_the_entry_never_names_a_password() -> None:
    assert not [name for name in environment.for_mcp_server() if "PASSWORD" in name]
