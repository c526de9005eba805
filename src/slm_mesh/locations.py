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


class NotPrivate(Exception):
    """The data folder can't be made ours alone; the message says why and what to do."""


def ensure_private_dir(path: str | os.PathLike[str]) -> None:
    """Create ``path`` (and parents) and make it 0700, refusing one owned by someone else."""
    where = os.fspath(path)
    try:
        os.makedirs(where, mode=0o700, exist_ok=True)
        st = os.stat(where)
        if st.st_uid != os.geteuid():
            raise NotPrivate(f"{where} belongs to uid {st.st_uid}, not to you; fix its owner")
        if st.st_mode & 0o777 != 0o700:
            os.chmod(where, 0o700)
    except PermissionError as exc:
        raise NotPrivate(f"can't use {where}: {exc.strerror}; check its permissions") from exc
