"""Where the mesh lives on disk, as plain strings (os.path only).

Kept free of pathlib and dataclasses: the ``slm-mesh mcp`` launcher, which every agent
starts, needs these two answers and nothing else of :mod:`slm_mesh.config`.
"""

from __future__ import annotations

import os


def data_dir() -> str:
    raw = os.environ.get("SLM_MESH_DATA_DIR")
    return os.path.expanduser(raw) if raw else os.path.join(os.path.expanduser("~"), ".slm-mesh")


def socket_path(data_dir: str) -> str:
    raw = os.environ.get("SLM_MESH_SOCKET")
    if raw:
        return os.path.expanduser(raw)
    # An explicit data dir keeps everything together (tests, several meshes per user).
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and not os.environ.get("SLM_MESH_DATA_DIR"):
        return os.path.join(runtime, "slm-mesh", "broker.sock")
    return os.path.join(data_dir, "broker.sock")
