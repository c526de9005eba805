"""The user services that run the broker: systemd units and a launchd agent, as text.

Pure functions: ``slm-mesh service install`` renders them for this machine (this Python,
these paths, the ``SLM_MESH_*`` variables set now), and the files in ``contrib/`` are the
same functions rendered for a typical install (``~/.local/bin/slm-mesh``, default paths), so
the two can't drift apart (a test compares them).

systemd: ``slm-mesh.socket`` owns the listening socket and starts ``slm-mesh.service`` on
the first connection; the broker takes the socket from ``LISTEN_FDS``. The hardening
options are the ones a *user* manager applies without user namespaces (which many systems
deny to unprivileged users, and without which ``ProtectSystem=``, ``PrivateTmp=`` and the
like make the service fail to start): no new privileges, a seccomp filter, restricted
address families, a private umask.

launchd: a LaunchAgent that runs the broker at login and again if it crashes
(``KeepAlive`` on an unsuccessful exit, so ``slm-mesh stop`` stops it), logging to the
data dir.
"""

from __future__ import annotations

import os
import plistlib
from collections.abc import Mapping, Sequence
from pathlib import Path

from slm_mesh.config import EXIT_CANT_START

SOCKET_UNIT = "slm-mesh.socket"
SERVICE_UNIT = "slm-mesh.service"
LAUNCHD_LABEL = "io.github.slm-mesh.broker"
LAUNCHD_FILE = f"{LAUNCHD_LABEL}.plist"

# What contrib/ holds: `pipx install slm-mesh` / `uv tool install slm-mesh` put the command
# in ~/.local/bin; the socket is where clients look when XDG_RUNTIME_DIR is set.
CONTRIB_EXEC_START = "%h/.local/bin/slm-mesh broker"
CONTRIB_LISTEN = "%t/slm-mesh/broker.sock"
CONTRIB_LAUNCHD_PROGRAM = (
    "/bin/sh",
    "-c",
    'mkdir -p "$HOME/.slm-mesh" && exec "$HOME/.local/bin/slm-mesh" broker '
    '>>"$HOME/.slm-mesh/broker.log" 2>&1',
)

_HARDENING = """\
UMask=0077
NoNewPrivileges=yes
LockPersonality=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
RestrictNamespaces=yes
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6
SystemCallArchitectures=native
SystemCallFilter=@system-service
SystemCallErrorNumber=EPERM
MemoryDenyWriteExecute=yes
"""


def socket_unit(listen: str) -> str:
    """``slm-mesh.socket``; ``listen`` is the ListenStream value (specifiers allowed)."""
    return f"""\
# slm-mesh broker socket: systemd listens here and starts slm-mesh.service on the first
# connection. `slm-mesh service install` writes it; see slm-mesh(1).
[Unit]
Description=slm-mesh broker socket (coordination for AI coding sessions)
Documentation=man:slm-mesh(1) man:slm-mesh-protocol(7)

[Socket]
ListenStream={listen}
SocketMode=0600
DirectoryMode=0700
RemoveOnStop=yes

[Install]
WantedBy=sockets.target
"""


def service_unit(exec_start: str, environment: Sequence[str] = ()) -> str:
    """``slm-mesh.service``; ``exec_start`` and each ``environment`` entry in unit syntax
    (see :func:`exec_line` and :func:`environment_line`)."""
    env = "".join(f"Environment={item}\n" for item in environment)
    return f"""\
# slm-mesh broker, started by slm-mesh.socket (socket activation: the broker takes the
# listening socket from LISTEN_FDS). `slm-mesh service install` writes it; see slm-mesh(1).
[Unit]
Description=slm-mesh broker (coordination for AI coding sessions)
Documentation=man:slm-mesh(1) man:slm-mesh-protocol(7)
Requires={SOCKET_UNIT}
After={SOCKET_UNIT}

[Service]
Type=simple
ExecStart={exec_start}
{env}Restart=on-failure
RestartSec=2s
# Exit statuses of a broker that can't start (a full or read-only disk, a bad data dir or
# database): restarting would fail the same way until someone acts.
RestartPreventExitStatus={" ".join(str(status) for status in EXIT_CANT_START)}
TimeoutStopSec=10s
# Hardening that a user manager can apply (no user namespaces needed).
{_HARDENING}"""


def launchd_plist(
    program: Sequence[str],
    *,
    log_path: str | None = None,
    working_dir: str | None = None,
    environment: Mapping[str, str] | None = None,
) -> bytes:
    """The LaunchAgent plist (XML) that runs ``program``."""
    plist: dict[str, object] = {
        "Label": LAUNCHD_LABEL,
        "ProgramArguments": list(program),
        "RunAtLoad": True,
        "KeepAlive": {"SuccessfulExit": False},
    }
    if environment:
        plist["EnvironmentVariables"] = dict(environment)
    if working_dir is not None:
        plist["WorkingDirectory"] = working_dir
    if log_path is not None:
        plist["StandardOutPath"] = log_path
        plist["StandardErrorPath"] = log_path
    return plistlib.dumps(plist)


# -- systemd syntax ---------------------------------------------------------------------


def escape_specifiers(text: str) -> str:
    """``text`` with ``%`` doubled, so systemd reads no specifier in it."""
    return text.replace("%", "%%")


def exec_line(argv: Sequence[str]) -> str:
    """An ``ExecStart=`` value running ``argv`` as it is (quoted, ``%`` and ``$`` escaped)."""
    return " ".join(_quote(arg.replace("$", "$$")) for arg in argv)


def environment_line(name: str, value: str) -> str:
    """An ``Environment=`` value setting ``name`` to ``value``."""
    return _quote(f"{name}={value}", always=True)


def _quote(arg: str, *, always: bool = False) -> str:
    arg = escape_specifiers(arg)
    if not always and arg and not any(c in arg for c in " \t\n\"'\\;"):
        return arg
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'


def unit_path(path: Path, env: Mapping[str, str] | None = None) -> str:
    """``path`` for a user unit: under ``$XDG_RUNTIME_DIR`` as ``%t/…``, under the home
    directory as ``%h/…`` (so the unit stays right if those move), else as it is."""
    env = os.environ if env is None else env
    text = str(path)
    for spec, base in (("%t", env.get("XDG_RUNTIME_DIR")), ("%h", env.get("HOME"))):
        if base and base != "/" and text.startswith(base.rstrip("/") + "/"):
            return spec + "/" + escape_specifiers(text[len(base.rstrip("/")) + 1 :])
    return escape_specifiers(text)


# -- contrib/ --------------------------------------------------------------------------


def contrib_files() -> dict[str, bytes]:
    """What ``contrib/`` holds, by path relative to the repository (rendered for a
    ``~/.local/bin/slm-mesh`` install with default paths)."""
    return {
        f"contrib/systemd/{SOCKET_UNIT}": socket_unit(CONTRIB_LISTEN).encode(),
        f"contrib/systemd/{SERVICE_UNIT}": service_unit(CONTRIB_EXEC_START).encode(),
        f"contrib/launchd/{LAUNCHD_FILE}": launchd_plist(CONTRIB_LAUNCHD_PROGRAM),
    }


if __name__ == "__main__":  # python -m slm_mesh.cli.units: rewrite contrib/
    repo = Path(__file__).resolve().parents[3]
    for relative, content in contrib_files().items():
        target = repo / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
        print(f"wrote {target}")
