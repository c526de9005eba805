"""``service install|uninstall|status``: run the broker as a user service.

Rules:
1. The platform is launchd on macOS and systemd elsewhere; ``--platform`` chooses.
2. Files go to the user's folder for them: systemd ``$XDG_CONFIG_HOME/systemd/user``
   (``~/.config/systemd/user``), launchd ``~/Library/LaunchAgents``. ``--dir`` or
   ``SLM_MESH_SERVICE_DIR`` put them elsewhere.
3. The service manager is driven with ``systemctl --user`` or ``launchctl`` (the programs
   named by ``SLM_MESH_SYSTEMCTL`` / ``SLM_MESH_LAUNCHCTL``, else found on ``PATH``). When
   there is none, or it has no user manager to talk to, the files are still written and the
   command prints what to run; ``--no-enable`` only writes the files.
4. The units are rendered for this machine: this Python (so the service runs the install
   you ran ``service install`` from), the socket path clients will look for, and the
   ``SLM_MESH_*`` variables set now. Run it from the environment your agents use.
5. Every step is printed: each file written or removed and each command run.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slm_mesh.cli import units
from slm_mesh.cli.connect import load_settings
from slm_mesh.cli.outcome import FAILED, OK, usage
from slm_mesh.cli.render import Output
from slm_mesh.client.address import BrokerUnreachable
from slm_mesh.client.blocking import BlockingClient
from slm_mesh.client.wire import ConnectionLost
from slm_mesh.config import Settings
from slm_mesh.protocol.errors import MeshError

PLATFORMS = ("systemd", "launchd")
MANAGER_TIMEOUT_S = 30.0
# Variables about installing, not about the broker: never copied into a unit.
_INSTALL_VARS = frozenset({"SLM_MESH_SERVICE_DIR", "SLM_MESH_SYSTEMCTL", "SLM_MESH_LAUNCHCTL"})


def default_platform() -> str:
    return "launchd" if sys.platform == "darwin" else "systemd"


def target_dir(platform: str, directory: Path | None) -> Path:
    """Where the unit files go (rule 2)."""
    if directory is not None:
        return directory.expanduser()
    override = os.environ.get("SLM_MESH_SERVICE_DIR")
    if override:
        return Path(override).expanduser()
    if platform == "launchd":
        return Path.home() / "Library" / "LaunchAgents"
    config = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config) / "systemd" / "user"


def broker_argv() -> list[str]:
    """The broker as the service runs it: this interpreter, this package."""
    return [sys.executable, "-m", "slm_mesh", "broker"]


def broker_environment(store: str | None = None) -> dict[str, str]:
    """The ``SLM_MESH_*`` variables to carry into the service (rule 4), with the shared
    store ``store`` if given.

    Raises:
        Usage: the store is not a PostgreSQL URL, or carries a password (a unit file is
            no place for one).
    """
    from slm_mesh.store.urls import has_password, is_url

    env = {
        k: v
        for k, v in sorted(os.environ.items())
        if k.startswith("SLM_MESH_") and k not in _INSTALL_VARS
    }
    if store is not None:
        if not is_url(store):
            raise usage(f"--store wants a postgresql:// URL, got {store!r}")
        env["SLM_MESH_STORE"] = store
    if has_password(env.get("SLM_MESH_STORE", "")):
        raise usage(
            "the store's URL carries a password, which must not be written into a unit "
            "file: put it in ~/.pgpass (or PGPASSFILE) and give the URL without it"
        )
    return dict(sorted(env.items()))


def rendered(platform: str, settings: Settings, store: str | None = None) -> dict[str, bytes]:
    """File name → content of what ``install`` writes for ``platform``."""
    env = broker_environment(store)
    if platform == "launchd":
        plist = units.launchd_plist(
            broker_argv(),
            log_path=str(settings.log_path),
            working_dir=str(settings.data_dir),
            environment=env,
        )
        return {units.LAUNCHD_FILE: plist}
    exec_start = units.exec_line(broker_argv())
    environment = [units.environment_line(k, v) for k, v in env.items()]
    return {
        units.SOCKET_UNIT: units.socket_unit(units.unit_path(settings.socket_path)).encode(),
        units.SERVICE_UNIT: units.service_unit(exec_start, environment).encode(),
    }


@dataclass
class Report:
    """What a service command did, for the human and the ``--json`` output."""

    platform: str
    directory: Path
    files: list[dict[str, Any]] = field(default_factory=list)
    commands: list[dict[str, Any]] = field(default_factory=list)
    todo: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def as_json(self, **extra: Any) -> dict[str, Any]:
        return {
            "platform": self.platform,
            "dir": str(self.directory),
            "files": self.files,
            "commands": self.commands,
            "todo": self.todo,
            "notes": self.notes,
            **extra,
        }


class Manager:
    """``systemctl --user`` or ``launchctl``, run and recorded (rules 3 and 5)."""

    def __init__(self, platform: str, report: Report, out: Output) -> None:
        self.platform = platform
        self.report = report
        self.out = out
        if platform == "launchd":
            self.program = os.environ.get("SLM_MESH_LAUNCHCTL") or shutil.which("launchctl")
            self.prefix: list[str] = []
        else:
            self.program = os.environ.get("SLM_MESH_SYSTEMCTL") or shutil.which("systemctl")
            self.prefix = ["--user"]

    @property
    def name(self) -> str:
        return "launchctl" if self.platform == "launchd" else "systemctl --user"

    def shown(self, args: list[str]) -> str:
        return " ".join([self.name, *(shlex.quote(a) for a in args)])

    def run(self, args: list[str], *, quiet: bool = False) -> subprocess.CompletedProcess[str]:
        assert self.program is not None
        argv = [self.program, *self.prefix, *args]
        try:
            done = subprocess.run(
                argv, capture_output=True, text=True, timeout=MANAGER_TIMEOUT_S, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            done = subprocess.CompletedProcess(argv, 127, "", str(exc))
        if not quiet:
            self.report.commands.append(
                {"argv": argv, "returncode": done.returncode, "stderr": done.stderr.strip()}
            )
            if not self.out.as_json:
                self.out.line(f"ran {self.shown(args)} (exit {done.returncode})")
        return done


def _uid_domain() -> str:
    return f"gui/{os.getuid()}"


# -- install ---------------------------------------------------------------------------


def install(
    out: Output, platform: str | None, directory: Path | None, enable: bool, store: str | None
) -> int:
    platform = _platform(platform)
    settings = load_settings()
    folder = target_dir(platform, directory)
    report = Report(platform, folder)
    files = rendered(platform, settings, store)
    folder.mkdir(parents=True, exist_ok=True)
    if platform == "launchd":
        # launchd opens the log itself and creates no folders.
        settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    for name, content in files.items():
        path = folder / name
        changed = not path.exists() or path.read_bytes() != content
        if changed:
            _write(path, content)
        report.files.append({"path": str(path), "changed": changed})
        if not out.as_json:
            out.line(("wrote " if changed else "unchanged ") + str(path))
    manager = Manager(platform, report, out)
    enabled = False
    status = OK
    if platform == "systemd":
        enabled, status = _enable_systemd(manager, settings, enable)
    else:
        enabled, status = _enable_launchd(manager, folder / units.LAUNCHD_FILE, enable)
    _finish(out, report, enabled=enabled)
    return status


def _enable_systemd(manager: Manager, settings: Settings, enable: bool) -> tuple[bool, int]:
    report = manager.report
    running = _running_broker_pid(settings)
    now = ["--now"] if running is None else []
    steps = [["daemon-reload"], ["enable", *now, units.SOCKET_UNIT]]
    if running is not None:
        report.notes.append(
            f"a broker is running (pid {running}) on the socket: stop it with `slm-mesh stop`, "
            f"then start the socket with `systemctl --user start {units.SOCKET_UNIT}`"
        )
    if not enable or manager.program is None:
        if enable:
            report.notes.append("systemctl was not found: run these to enable the service")
        report.todo.extend(manager.shown(step) for step in steps)
        return False, OK
    reload = manager.run(steps[0])
    if reload.returncode != 0:
        report.notes.append(
            "systemctl --user can't reach a user service manager here "
            f"({reload.stderr.strip() or 'exit ' + str(reload.returncode)}); "
            "run these where it can"
        )
        report.todo.extend(manager.shown(step) for step in steps)
        return False, OK
    done = manager.run(steps[1])
    if done.returncode != 0:
        manager.out.error(f"{manager.shown(steps[1])} failed: {done.stderr.strip()}")
        return False, FAILED
    return True, OK


def _enable_launchd(manager: Manager, plist: Path, enable: bool) -> tuple[bool, int]:
    report = manager.report
    bootstrap = ["bootstrap", _uid_domain(), str(plist)]
    if not enable or manager.program is None:
        if enable:
            report.notes.append("launchctl was not found: run this to load the agent")
        report.todo.append(manager.shown(bootstrap))
        return False, OK
    # A loaded agent keeps its old definition: unload it first (failing when none is).
    manager.run(["bootout", f"{_uid_domain()}/{units.LAUNCHD_LABEL}"], quiet=True)
    done = manager.run(bootstrap)
    if done.returncode != 0:
        manager.out.error(f"{manager.shown(bootstrap)} failed: {done.stderr.strip()}")
        return False, FAILED
    return True, OK


def _running_broker_pid(settings: Settings) -> int | None:
    """The pid of a broker answering now, if any."""
    try:
        with BlockingClient.connect(settings, timeout=1.0, client_name="slm-mesh-cli") as c:
            return int(c.call("mesh.status")["pid"])
    except (BrokerUnreachable, ConnectionLost, MeshError, OSError):
        return None


# -- uninstall -------------------------------------------------------------------------


def uninstall(out: Output, platform: str | None, directory: Path | None, disable: bool) -> int:
    platform = _platform(platform)
    folder = target_dir(platform, directory)
    report = Report(platform, folder)
    manager = Manager(platform, report, out)
    names = (
        [units.LAUNCHD_FILE] if platform == "launchd" else [units.SERVICE_UNIT, units.SOCKET_UNIT]
    )
    present = [folder / n for n in names if (folder / n).exists()]
    if not present:
        report.notes.append(f"nothing is installed in {folder}")
        _finish(out, report, removed=[])
        return OK
    if platform == "launchd":
        steps = [["bootout", f"{_uid_domain()}/{units.LAUNCHD_LABEL}"]]
    else:
        steps = [["disable", "--now", units.SOCKET_UNIT], ["stop", units.SERVICE_UNIT]]
    usable = disable and manager.program is not None
    if usable:
        for step in steps:
            manager.run(step)
    elif disable:
        report.todo.extend(manager.shown(step) for step in steps)
    removed = []
    for path in present:
        path.unlink()
        removed.append(str(path))
        if not out.as_json:
            out.line(f"removed {path}")
    if platform == "systemd":
        if usable:
            manager.run(["daemon-reload"])
        elif disable:
            report.todo.append(manager.shown(["daemon-reload"]))
    _finish(out, report, removed=removed)
    return OK


# -- status ----------------------------------------------------------------------------


def status(out: Output, platform: str | None, directory: Path | None) -> int:
    platform = _platform(platform)
    settings = load_settings()
    folder = target_dir(platform, directory)
    report = Report(platform, folder)
    files = rendered(platform, settings)
    states = []
    for name, content in files.items():
        path = folder / name
        installed = path.exists()
        current = installed and path.read_bytes() == content
        states.append({"path": str(path), "installed": installed, "current": current})
    manager = Manager(platform, report, out if out.as_json else Output(True))
    state: dict[str, str | None] = {}
    unreachable: str | None = None  # why the service manager could not be asked
    if manager.program is not None and any(s["installed"] for s in states):
        if platform == "systemd":
            for key, args in (
                ("socket_enabled", ["is-enabled", units.SOCKET_UNIT]),
                ("socket_active", ["is-active", units.SOCKET_UNIT]),
                ("service_active", ["is-active", units.SERVICE_UNIT]),
            ):
                done = manager.run(args, quiet=True)
                state[key] = done.stdout.strip() or None
                if state[key] is None and done.returncode != 0 and unreachable is None:
                    unreachable = done.stderr.strip() or f"exit {done.returncode}"
        else:
            done = manager.run(["print", f"{_uid_domain()}/{units.LAUNCHD_LABEL}"], quiet=True)
            state["loaded"] = "yes" if done.returncode == 0 else "no"
    installed = all(s["installed"] for s in states)
    if out.as_json:
        out.json(
            {
                "platform": platform,
                "dir": str(folder),
                "installed": installed,
                "files": states,
                "manager": state or None,
                "manager_error": unreachable,
            }
        )
        return OK
    for s in states:
        what = "not installed" if not s["installed"] else "installed"
        if s["installed"] and not s["current"]:
            what += " (differs from what `slm-mesh service install` would write now)"
        out.line(f"{s['path']}: {what}")
    for key, value in state.items():
        out.line(f"{key.replace('_', ' ')}: {value or 'unknown'}")
    if unreachable is not None:
        out.note(_no_manager(unreachable))
    return OK


def _no_manager(error: str) -> str:
    """What it means that ``systemctl --user`` could not answer (service status)."""
    if "bus" in error.lower():
        what = "no systemd user manager is running for you"
    else:
        what = "systemctl --user could not say"
    return (
        f"{what} ({error}): nothing starts the broker from these units now; agents' MCP "
        "servers (and `slm-mesh start`) start one on demand meanwhile. A user manager runs "
        "in a login session, or always after `loginctl enable-linger $USER`."
    )


# -- helpers ---------------------------------------------------------------------------


def _platform(platform: str | None) -> str:
    chosen = platform or default_platform()
    if chosen not in PLATFORMS:
        raise usage(f"--platform must be one of {', '.join(PLATFORMS)}")
    return chosen


def _write(path: Path, content: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(content)
    tmp.chmod(0o644)
    os.replace(tmp, path)


def _finish(out: Output, report: Report, **extra: Any) -> None:
    if out.as_json:
        out.json(report.as_json(**extra))
        return
    for note in report.notes:
        out.line(note)
    for line in report.todo:
        out.line(f"  {line}")
