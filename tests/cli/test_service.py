"""User services: the systemd units and the launchd plist, as ``contrib/`` ships them and as
``slm-mesh service install`` writes them; validated, and run for real (socket activation
from a pre-bound socket; the launchd program as launchd would start it).

No test here calls the real systemctl or launchctl: ``SLM_MESH_SYSTEMCTL`` and
``SLM_MESH_LAUNCHCTL`` point at a stand-in that records its arguments, and every unit file
goes to a temp dir (``SLM_MESH_SERVICE_DIR`` / ``--dir``).
"""

from __future__ import annotations

import json
import os
import plistlib
import shlex
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from slm_mesh.cli import units
from slm_mesh.config import EXIT_CANT_START, Settings
from tests.cli.conftest import Cli, has_fields, wait_until
from tests.wire import broker_process, stop_process

REPO = Path(__file__).resolve().parents[2]
HARDENING = (
    "NoNewPrivileges",
    "RestrictAddressFamilies",
    "SystemCallFilter",
    "LockPersonality",
    "UMask",
)


def parse_unit(text: str) -> dict[str, list[tuple[str, str]]]:
    """A unit file as ``{section: [(key, value), ...]}``, refusing anything malformed."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] | None = None
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], [])
            continue
        key, sep, value = line.partition("=")
        assert sep and current is not None and key.strip().isidentifier(), (number, raw)
        current.append((key.strip(), value.strip()))
    return sections


def value(unit: dict[str, list[tuple[str, str]]], section: str, key: str) -> str:
    (found,) = [v for k, v in unit[section] if k == key]
    return found


def expand(text: str, home: str, runtime: str) -> str:
    """What systemd makes of the specifiers the units use (%h, %t, %%)."""
    return text.replace("%%", "\0").replace("%h", home).replace("%t", runtime).replace("\0", "%")


# -- fixtures --------------------------------------------------------------------------


@pytest.fixture
def fake_ctl(tmp_short: Path) -> tuple[Path, Path]:
    """A stand-in for systemctl/launchctl: records argv as JSON lines, exits with the
    status in the file ``<log>.status`` (0 when absent), printing ``<log>.stderr``."""
    log = tmp_short / "ctl.log"
    script = tmp_short / "fakectl"
    script.write_text(
        f"#!{sys.executable}\n"
        "import json, pathlib, sys\n"
        f"log = pathlib.Path({str(log)!r})\n"
        "with log.open('a') as f: f.write(json.dumps(sys.argv[1:]) + '\\n')\n"
        "err = log.with_suffix('.stderr')\n"
        "if err.exists(): sys.stderr.write(err.read_text())\n"
        "status = log.with_suffix('.status')\n"
        "sys.exit(int(status.read_text()) if status.exists() else 0)\n"
    )
    script.chmod(0o755)
    return script, log


def calls(log: Path) -> list[list[str]]:
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines()]


@pytest.fixture
def unit_dir(tmp_short: Path) -> Path:
    return tmp_short / "units"


@pytest.fixture
def service_cli(cli: Cli, fake_ctl: tuple[Path, Path], unit_dir: Path) -> Cli:
    script, _ = fake_ctl
    cli.extra_env.update(
        SLM_MESH_SYSTEMCTL=str(script),
        SLM_MESH_LAUNCHCTL=str(script),
        SLM_MESH_SERVICE_DIR=str(unit_dir),
    )
    return cli


# -- contrib ---------------------------------------------------------------------------


def test_contrib_holds_exactly_what_units_renders() -> None:
    for relative, content in units.contrib_files().items():
        assert (REPO / relative).read_bytes() == content, (
            f"{relative} is stale: run python -m slm_mesh.cli.units"
        )


def test_contrib_units_parse_with_socket_activation_and_hardening() -> None:
    sock = parse_unit((REPO / "contrib/systemd/slm-mesh.socket").read_text())
    service = parse_unit((REPO / "contrib/systemd/slm-mesh.service").read_text())
    assert value(sock, "Socket", "ListenStream") == "%t/slm-mesh/broker.sock"
    assert value(sock, "Socket", "SocketMode") == "0600"
    assert value(sock, "Socket", "DirectoryMode") == "0700"
    assert value(sock, "Install", "WantedBy") == "sockets.target"
    assert value(service, "Unit", "Requires") == "slm-mesh.socket"
    assert value(service, "Service", "ExecStart") == "%h/.local/bin/slm-mesh broker"
    for key in HARDENING:
        assert value(service, "Service", key)
    # Options that need user namespaces would stop the service starting on many systems.
    keys = {k for k, _ in service["Service"]}
    assert not keys & {"ProtectSystem", "ProtectHome", "PrivateTmp", "PrivateUsers"}


def test_contrib_plist_is_a_valid_launch_agent() -> None:
    plist = plistlib.loads((REPO / f"contrib/launchd/{units.LAUNCHD_FILE}").read_bytes())
    assert plist["Label"] == units.LAUNCHD_LABEL
    assert plist["RunAtLoad"] is True
    assert plist["KeepAlive"] == {"SuccessfulExit": False}
    assert plist["ProgramArguments"][:2] == ["/bin/sh", "-c"]
    assert '>>"$HOME/.slm-mesh/broker.log"' in plist["ProgramArguments"][2]


def _home_with_slm_mesh(root: Path) -> Path:
    """A home dir whose ~/.local/bin/slm-mesh runs this checkout (as pipx would install)."""
    home = root / "h"
    bin_dir = home / ".local" / "bin"
    bin_dir.mkdir(parents=True)
    command = bin_dir / "slm-mesh"
    command.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -m slm_mesh "$@"\n')
    command.chmod(0o755)
    return home


def _clean_env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SLM_MESH_", "LISTEN_", "XDG_", "NO_COLOR"))
    }
    env.update(extra)
    return env


# -- systemd-analyze -------------------------------------------------------------------


def _verify(files: list[Path], tmp: Path, home: Path) -> subprocess.CompletedProcess[str]:
    runtime = tmp / "rt-verify"
    runtime.mkdir(mode=0o700, exist_ok=True)
    args = ["systemd-analyze", "--user", "verify"]
    env = _clean_env(HOME=str(home), XDG_RUNTIME_DIR=str(runtime))
    if shutil.which("man"):
        # Documentation=man:… is checked too: install the pages where man looks.
        for page in ("slm-mesh.1", "slm-mesh-protocol.7"):
            target = tmp / "share" / "man" / f"man{page[-1]}" / page
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(REPO / "man" / page, target)
        env["MANPATH"] = str(tmp / "share" / "man")
    else:
        args.append("--man=no")
    return subprocess.run(
        [*args, *map(str, files)], env=env, capture_output=True, text=True, timeout=60
    )


needs_systemd_analyze = pytest.mark.needs("systemd-analyze")


@needs_systemd_analyze
def test_systemd_analyze_verifies_the_contrib_units(tmp_short: Path) -> None:
    home = _home_with_slm_mesh(tmp_short)
    done = _verify(
        [REPO / "contrib/systemd/slm-mesh.socket", REPO / "contrib/systemd/slm-mesh.service"],
        tmp_short,
        home,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # not even a warning (unknown keys only warn)


@needs_systemd_analyze
def test_a_broker_that_cannot_start_is_not_restarted_by_its_unit(
    tmp_short: Path, settings: Settings
) -> None:
    """The statuses of a broker that can't start (a bad data dir here) are the unit's
    RestartPreventExitStatus=, and systemd takes the key as written (issue 13)."""
    settings.data_dir.parent.mkdir(parents=True, exist_ok=True)
    settings.data_dir.write_text("a file where the data dir should be")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLM_MESH_")}
    env["SLM_MESH_DATA_DIR"] = str(settings.data_dir)
    done = subprocess.run(
        [sys.executable, "-m", "slm_mesh", "broker"], env=env, capture_output=True, timeout=60
    )
    assert done.returncode not in (0, 1), done.stderr
    service = parse_unit((REPO / "contrib/systemd/slm-mesh.service").read_text())
    prevented = {int(s) for s in value(service, "Service", "RestartPreventExitStatus").split()}
    assert done.returncode in prevented
    assert prevented == set(EXIT_CANT_START)
    home = _home_with_slm_mesh(tmp_short)
    unit_dir = tmp_short / "units"
    unit_dir.mkdir()
    (unit_dir / units.SOCKET_UNIT).write_text(units.socket_unit(units.CONTRIB_LISTEN))
    unit = unit_dir / units.SERVICE_UNIT
    unit.write_text(units.service_unit(f"{home}/.local/bin/slm-mesh broker"))
    verified = _verify([unit_dir / units.SOCKET_UNIT, unit], tmp_short, home)
    assert verified.returncode == 0, verified.stderr
    assert "RestartPreventExitStatus" not in verified.stderr  # a key systemd knows


@needs_systemd_analyze
def test_systemd_analyze_verifies_the_installed_units(
    service_cli: Cli, unit_dir: Path, tmp_short: Path
) -> None:
    service_cli.ok("service", "install", "--platform", "systemd", "--no-enable")
    done = _verify(
        [unit_dir / units.SOCKET_UNIT, unit_dir / units.SERVICE_UNIT],
        tmp_short,
        Path.home(),
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""


# -- socket activation, for real -------------------------------------------------------


def _activate(
    argv: list[str], sock_path: Path, env: dict[str, str], cwd: Path
) -> subprocess.Popen[bytes]:
    """Run ``argv`` as systemd would for the socket unit: the listening socket, bound at
    ``sock_path``, as fd 3 with ``LISTEN_FDS=1`` and ``LISTEN_PID`` its own pid."""
    sock_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(sock_path))
    listener.listen(16)
    fd = listener.fileno()
    exec_it = (
        "import os, sys; os.dup2(int(sys.argv[1]), 3); "
        "os.environ['LISTEN_PID'] = str(os.getpid()); os.execvp(sys.argv[2], sys.argv[2:])"
    )
    try:
        return subprocess.Popen(
            [sys.executable, "-c", exec_it, str(fd), *argv],
            env={**env, "LISTEN_FDS": "1"},
            cwd=cwd,
            pass_fds=(fd,),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    finally:
        listener.close()


def _status(env: dict[str, str], proc: subprocess.Popen[bytes]) -> dict[str, Any]:
    """``slm-mesh status --json`` with ``env``, once the broker answers."""
    result: dict[str, Any] = {}

    def answers() -> bool:
        assert proc.poll() is None, f"the broker exited with {proc.returncode}"
        done = subprocess.run(
            [sys.executable, "-m", "slm_mesh", "status", "--json"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        if done.returncode == 0:
            result.update(json.loads(done.stdout))
        return done.returncode == 0

    wait_until(answers, what="the activated broker to answer")
    return result


def test_the_installed_service_runs_with_a_socket_handed_over_by_systemd(
    service_cli: Cli, unit_dir: Path, settings: Settings
) -> None:
    service_cli.ok("service", "install", "--platform", "systemd", "--no-enable")
    sock_unit = parse_unit((unit_dir / units.SOCKET_UNIT).read_text())
    service = parse_unit((unit_dir / units.SERVICE_UNIT).read_text())
    home = os.environ.get("HOME", "/")
    listen = Path(expand(value(sock_unit, "Socket", "ListenStream"), home, "/nonexistent"))
    assert listen == settings.socket_path  # where the CLI will look
    argv = shlex.split(expand(value(service, "Service", "ExecStart"), home, "/nonexistent"))
    assert argv == [sys.executable, "-m", "slm_mesh", "broker"]
    env = _clean_env()
    for _, item in (kv for kv in service["Service"] if kv[0] == "Environment"):
        name, _, val = shlex.split(item)[0].partition("=")
        env[name] = val
    assert env["SLM_MESH_DATA_DIR"] == str(settings.data_dir)
    proc = _activate(argv, listen, env, settings.data_dir.parent)
    try:
        status = _status(service_cli.env(), proc)
        assert status["pid"] == proc.pid
        assert status["listeners"] == [{"kind": "unix", "path": str(listen)}]
        assert status["idle_exit_s"] is None
    finally:
        stop_process(proc)


def test_the_contrib_units_work_for_a_local_bin_install(tmp_short: Path) -> None:
    home = _home_with_slm_mesh(tmp_short)
    runtime = tmp_short / "rt"
    runtime.mkdir(mode=0o700)
    sock_unit = parse_unit((REPO / "contrib/systemd/slm-mesh.socket").read_text())
    service = parse_unit((REPO / "contrib/systemd/slm-mesh.service").read_text())
    listen = Path(expand(value(sock_unit, "Socket", "ListenStream"), str(home), str(runtime)))
    argv = shlex.split(expand(value(service, "Service", "ExecStart"), str(home), str(runtime)))
    # What the user manager gives a service: HOME and XDG_RUNTIME_DIR, nothing of ours.
    env = _clean_env(HOME=str(home), XDG_RUNTIME_DIR=str(runtime))
    proc = _activate(argv, listen, env, home)
    try:
        status = _status(env, proc)  # the CLI, with defaults only, finds it
        assert status["listeners"] == [{"kind": "unix", "path": str(listen)}]
        assert status["data_dir"] == str(home / ".slm-mesh")
    finally:
        stop_process(proc)


# -- launchd, run as launchd would -----------------------------------------------------


def _launch(plist: dict[str, Any], env: dict[str, str]) -> subprocess.Popen[bytes]:
    """Start ``ProgramArguments`` the way launchd does, with the plist's environment,
    working directory and log files."""
    env = {**env, **plist.get("EnvironmentVariables", {})}
    out = plist.get("StandardOutPath")
    log = open(out, "ab") if out else subprocess.DEVNULL  # noqa: SIM115
    try:
        return subprocess.Popen(
            plist["ProgramArguments"],
            env=env,
            cwd=plist.get("WorkingDirectory", "/"),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
        )
    finally:
        if out:
            log.close()  # type: ignore[union-attr]


def test_the_contrib_launch_agent_runs_the_broker_and_logs_in_the_data_dir(
    tmp_short: Path,
) -> None:
    home = _home_with_slm_mesh(tmp_short)
    plist = plistlib.loads((REPO / f"contrib/launchd/{units.LAUNCHD_FILE}").read_bytes())
    env = _clean_env(HOME=str(home))
    proc = _launch(plist, env)
    try:
        status = _status(env, proc)
        assert status["pid"] == proc.pid  # the shell exec'd the broker: launchd watches it
        assert status["data_dir"] == str(home / ".slm-mesh")
        log = home / ".slm-mesh" / "broker.log"
        wait_until(lambda: "listening" in log.read_text(), what="the broker's log line")
    finally:
        stop_process(proc)


def test_the_installed_launch_agent_runs_this_python_with_its_log_in_the_data_dir(
    service_cli: Cli, unit_dir: Path, settings: Settings
) -> None:
    service_cli.ok("service", "install", "--platform", "launchd", "--no-enable")
    plist = plistlib.loads((unit_dir / units.LAUNCHD_FILE).read_bytes())
    assert plist["Label"] == units.LAUNCHD_LABEL
    assert plist["ProgramArguments"] == [sys.executable, "-m", "slm_mesh", "broker"]
    assert plist["KeepAlive"] == {"SuccessfulExit": False}
    assert plist["StandardOutPath"] == plist["StandardErrorPath"] == str(settings.log_path)
    assert plist["WorkingDirectory"] == str(settings.data_dir)
    assert plist["EnvironmentVariables"]["SLM_MESH_DATA_DIR"] == str(settings.data_dir)
    proc = _launch(plist, _clean_env())
    try:
        assert _status(service_cli.env(), proc)["pid"] == proc.pid
        wait_until(lambda: "listening" in settings.log_path.read_text(), what="the log line")
    finally:
        stop_process(proc)


# -- service install / uninstall / status ----------------------------------------------


def test_service_install_writes_and_enables_the_units_saying_what_it_did(
    service_cli: Cli, fake_ctl: tuple[Path, Path], unit_dir: Path
) -> None:
    _, log = fake_ctl
    out = service_cli.ok("service", "install", "--platform", "systemd")
    assert f"wrote {unit_dir / units.SOCKET_UNIT}" in out
    assert f"wrote {unit_dir / units.SERVICE_UNIT}" in out
    assert "ran systemctl --user daemon-reload (exit 0)" in out
    assert "ran systemctl --user enable --now slm-mesh.socket (exit 0)" in out
    assert calls(log) == [
        ["--user", "daemon-reload"],
        ["--user", "enable", "--now", "slm-mesh.socket"],
    ]
    again = service_cli.json("service", "install", "--platform", "systemd")
    has_fields(again, ("platform", "dir", "files", "commands", "todo", "notes", "enabled"))
    assert again["enabled"] is True
    assert [f["changed"] for f in again["files"]] == [False, False]  # already current
    assert [c["returncode"] for c in again["commands"]] == [0, 0]


def test_service_status_reports_files_and_the_managers_view(
    service_cli: Cli, fake_ctl: tuple[Path, Path], unit_dir: Path
) -> None:
    _, log = fake_ctl
    before = service_cli.json("service", "status", "--platform", "systemd")
    assert before["installed"] is False
    assert before["manager"] is None
    service_cli.ok("service", "install", "--platform", "systemd", "--no-enable")
    log.unlink(missing_ok=True)
    after = service_cli.json("service", "status", "--platform", "systemd")
    assert after["installed"] is True
    assert all(f["installed"] and f["current"] for f in after["files"])
    assert set(after["manager"]) == {"socket_enabled", "socket_active", "service_active"}
    assert calls(log) == [
        ["--user", "is-enabled", "slm-mesh.socket"],
        ["--user", "is-active", "slm-mesh.socket"],
        ["--user", "is-active", "slm-mesh.service"],
    ]
    (unit_dir / units.SERVICE_UNIT).write_text("[Service]\nExecStart=/bin/true\n")
    stale = service_cli.ok("service", "status", "--platform", "systemd")
    assert "differs from what `slm-mesh service install` would write now" in stale


def test_service_status_without_a_user_manager_says_what_that_means(
    service_cli: Cli, fake_ctl: tuple[Path, Path]
) -> None:
    _, log = fake_ctl
    service_cli.ok("service", "install", "--platform", "systemd", "--no-enable")
    log.with_suffix(".status").write_text("1")
    log.with_suffix(".stderr").write_text("Failed to connect to bus: No medium found\n")
    done = service_cli.run("service", "status", "--platform", "systemd")
    assert done.returncode == 0, done.stderr
    assert "None" not in done.stdout
    assert "socket active: unknown" in done.stdout
    assert "no systemd user manager is running for you" in done.stderr
    assert "start one on demand" in done.stderr
    assert "loginctl enable-linger" in done.stderr
    doc = service_cli.json("service", "status", "--platform", "systemd")
    assert doc["manager_error"] == "Failed to connect to bus: No medium found"


def test_service_uninstall_disables_then_removes(
    service_cli: Cli, fake_ctl: tuple[Path, Path], unit_dir: Path
) -> None:
    _, log = fake_ctl
    service_cli.ok("service", "install", "--platform", "systemd", "--no-enable")
    doc = service_cli.json("service", "uninstall", "--platform", "systemd")
    assert sorted(doc["removed"]) == sorted(
        str(unit_dir / n) for n in (units.SOCKET_UNIT, units.SERVICE_UNIT)
    )
    assert not list(unit_dir.iterdir())
    assert calls(log) == [
        ["--user", "disable", "--now", "slm-mesh.socket"],
        ["--user", "stop", "slm-mesh.service"],
        ["--user", "daemon-reload"],
    ]
    nothing = service_cli.ok("service", "uninstall", "--platform", "systemd")
    assert f"nothing is installed in {unit_dir}" in nothing


def test_without_a_user_manager_install_says_what_to_run(
    service_cli: Cli, fake_ctl: tuple[Path, Path], unit_dir: Path
) -> None:
    _, log = fake_ctl
    log.with_suffix(".status").write_text("1")
    log.with_suffix(".stderr").write_text("Failed to connect to bus: No medium found\n")
    doc = service_cli.json("service", "install", "--platform", "systemd")
    assert doc["enabled"] is False
    assert doc["todo"] == [
        "systemctl --user daemon-reload",
        "systemctl --user enable --now slm-mesh.socket",
    ]
    assert "Failed to connect to bus" in doc["notes"][0]
    assert (unit_dir / units.SOCKET_UNIT).exists()  # the files are written all the same


def test_without_systemctl_install_writes_the_files_and_says_what_to_run(
    cli: Cli, unit_dir: Path, tmp_short: Path
) -> None:
    empty = tmp_short / "empty-path"
    empty.mkdir()
    out = cli.ok("service", "install", "--dir", str(unit_dir), PATH=str(empty))
    assert "systemctl was not found" in out
    assert "  systemctl --user enable --now slm-mesh.socket" in out
    assert (unit_dir / units.SERVICE_UNIT).exists()


def test_install_next_to_a_running_broker_enables_without_starting(
    service_cli: Cli, fake_ctl: tuple[Path, Path], settings: Settings
) -> None:
    _, log = fake_ctl
    with broker_process(settings) as proc:
        doc = service_cli.json("service", "install", "--platform", "systemd")
    assert ["--user", "enable", "slm-mesh.socket"] in calls(log)
    assert f"a broker is running (pid {proc.pid})" in doc["notes"][0]


def test_service_install_on_macos_bootstraps_the_agent(
    service_cli: Cli, fake_ctl: tuple[Path, Path], unit_dir: Path
) -> None:
    _, log = fake_ctl
    doc = service_cli.json("service", "install", "--platform", "launchd")
    plist = str(unit_dir / units.LAUNCHD_FILE)
    domain = f"gui/{os.getuid()}"
    assert calls(log) == [
        ["bootout", f"{domain}/{units.LAUNCHD_LABEL}"],
        ["bootstrap", domain, plist],
    ]
    assert doc["enabled"] is True
    assert [c["argv"][1:] for c in doc["commands"]] == [["bootstrap", domain, plist]]
    service_cli.ok("service", "uninstall", "--platform", "launchd")
    assert calls(log)[-1] == ["bootout", f"{domain}/{units.LAUNCHD_LABEL}"]
    assert not Path(plist).exists()


def test_unit_paths_use_specifiers_and_escape_percent() -> None:
    env = {"HOME": "/home/ann", "XDG_RUNTIME_DIR": "/run/user/1000"}
    assert units.unit_path(Path("/run/user/1000/slm-mesh/broker.sock"), env) == (
        "%t/slm-mesh/broker.sock"
    )
    assert units.unit_path(Path("/home/ann/.slm-mesh/broker.sock"), env) == (
        "%h/.slm-mesh/broker.sock"
    )
    assert units.unit_path(Path("/srv/100%/b.sock"), env) == "/srv/100%%/b.sock"
    assert units.exec_line(["/opt/my env/python", "-m", "x", "$HOME"]) == (
        '"/opt/my env/python" -m x $$HOME'
    )
    assert units.environment_line("A", 'say "hi" 5%') == '"A=say \\"hi\\" 5%%"'


@needs_systemd_analyze
def test_systemd_analyze_is_not_a_rubber_stamp(tmp_short: Path) -> None:
    broken = tmp_short / "slm-mesh.service"
    broken.write_text(units.service_unit("/nonexistent/slm-mesh broker"))
    done = _verify([broken], tmp_short, tmp_short)
    assert done.returncode != 0
    assert "/nonexistent/slm-mesh" in done.stderr


@pytest.mark.skipif(sys.platform == "darwin", reason="systemd units are for Linux")
def test_stop_says_that_an_installed_socket_unit_restarts_the_broker(
    service_cli: Cli, settings: Settings
) -> None:
    service_cli.ok("service", "install", "--platform", "systemd", "--no-enable")
    with broker_process(settings):
        done = service_cli.run("stop")
    assert done.returncode == 0, done.stderr
    assert "systemd starts the broker again on the next connection" in done.stderr


# -- the shared store (issue 12) --------------------------------------------------------

STORE_URL = "postgresql://mesh@db.example:5432/slm?sslmode=verify-full"


def test_service_install_writes_the_store_into_the_unit(service_cli: Cli, unit_dir: Path) -> None:
    service_cli.ok(
        "service", "install", "--platform", "systemd", "--no-enable", "--store", STORE_URL
    )
    service = parse_unit((unit_dir / units.SERVICE_UNIT).read_text())
    env = dict(
        shlex.split(item)[0].partition("=")[::2]
        for key, item in service["Service"]
        if key == "Environment"
    )
    assert env["SLM_MESH_STORE"] == STORE_URL


def test_a_password_in_the_store_url_is_never_written_into_a_unit(
    service_cli: Cli,
    unit_dir: Path,
) -> None:
    done = service_cli.run(
        "service",
        "install",
        "--platform",
        "systemd",
        "--no-enable",
        "--store",
        "postgresql://mesh:s3cret@db.example/slm",
    )
    assert done.returncode == 2
    assert "~/.pgpass" in done.stderr
    assert "s3cret" not in done.stdout + done.stderr
    assert not (unit_dir / units.SERVICE_UNIT).exists()
    # ... nor one carried from the environment.
    done = service_cli.run(
        "service",
        "install",
        "--platform",
        "systemd",
        "--no-enable",
        SLM_MESH_STORE="postgresql://db.example/slm?password=s3cret",
    )
    assert done.returncode == 2
    assert not (unit_dir / units.SERVICE_UNIT).exists()
