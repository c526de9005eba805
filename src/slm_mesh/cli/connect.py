"""Finding the broker from the CLI: settings, connecting, and saying why it failed.

Every command except bare ``slm-mesh`` and ``start`` only *connects*: none of them starts
a broker, so a typo'd data dir never leaves a stray broker behind. When nothing answers,
the error says how to start one, or names the permission problem that is in the way.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from slm_mesh.cli.outcome import CliError, unreachable, usage
from slm_mesh.client.address import START_HINT, BrokerUnreachable
from slm_mesh.client.blocking import BlockingClient
from slm_mesh.config import VERSION, Settings

CLIENT_NAME = f"slm-mesh-cli/{VERSION}"
CONNECT_TIMEOUT_S = 5.0


def load_settings() -> Settings:
    """Settings from the environment; a malformed ``SLM_MESH_*`` value is a usage error."""
    try:
        return Settings.from_env()
    except ValueError as exc:
        raise usage(str(exc)) from None


def connect(settings: Settings, timeout: float | None = CONNECT_TIMEOUT_S) -> BlockingClient:
    """A connection to the running broker, never starting one.

    Raises:
        CliError: exit 3, with how to start a broker or which permission is in the way.
    """
    try:
        return BlockingClient.connect(settings, timeout=timeout, client_name=CLIENT_NAME)
    except BrokerUnreachable as exc:
        problem = permission_problem(settings)
        raise unreachable(problem or str(exc)) from None
    except PermissionError as exc:
        problem = permission_problem(settings)
        raise unreachable(problem or f"permission denied: {exc}") from None


def permission_problem(settings: Settings) -> str | None:
    """Why this user can't use the data dir or the socket, or None if nothing is wrong."""
    for path, what in (
        (settings.data_dir, "data dir"),
        (settings.socket_path.parent, "socket folder"),
    ):
        problem = _dir_problem(path, what)
        if problem:
            return problem
    sock = settings.socket_path
    try:
        st = sock.lstat()
    except FileNotFoundError:
        return None
    except PermissionError:
        return f"can't look at the socket {sock}: permission denied on its folder"
    if st.st_uid != os.geteuid():
        return (
            f"the socket {sock} belongs to uid {st.st_uid}, not to you (uid {os.geteuid()}): "
            "it is another user's broker; set SLM_MESH_DATA_DIR or SLM_MESH_SOCKET to your own"
        )
    if not os.access(sock, os.R_OK | os.W_OK):
        mode = stat.S_IMODE(st.st_mode)
        return f"can't connect to {sock}: permission denied (mode {mode:04o}; it should be 0600)"
    return None


def _dir_problem(path: Path, what: str) -> str | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    except PermissionError:
        return f"can't use the {what} {path}: permission denied on a folder above it"
    except NotADirectoryError:
        return f"the {what} {path} is not a folder"
    if not stat.S_ISDIR(st.st_mode):
        return f"the {what} {path} is not a folder"
    if st.st_uid != os.geteuid():
        return (
            f"the {what} {path} belongs to uid {st.st_uid}, not to you (uid {os.geteuid()}); "
            "fix its owner or point SLM_MESH_DATA_DIR elsewhere"
        )
    if not os.access(path, os.R_OK | os.X_OK):
        mode = stat.S_IMODE(st.st_mode)
        return f"can't use the {what} {path}: permission denied (mode {mode:04o}; make it 0700)"
    return None


def not_running(settings: Settings) -> CliError:
    """The error for "no broker", with the hint how to start one."""
    return unreachable(
        f"no slm-mesh broker is running (socket {settings.socket_path}); {START_HINT}"
    )
