"""What the CLI loads on its way up (a person waits for every command), the fast path's
equivalence with the cyclopts app, and colour only on a terminal."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest

import slm_mesh.cli
from slm_mesh.cli import app as cli_app
from slm_mesh.config import Settings
from tests.cli.conftest import Cli

HEAVY = (
    "mcp",
    "pydantic",
    "pydantic_core",
    "rich",
    "textual",
    "trio",
    "anyio",
    "docutils",
    "sqlite_utils",
)


def loaded_after(cli: Cli, *args: str) -> set[str]:
    """Top-level packages in ``sys.modules`` after ``slm_mesh.cli.main(args)`` ran in a
    fresh interpreter."""
    script = (
        "import json, sys\n"
        "from slm_mesh.cli import main\n"
        "main(sys.argv[1:])\n"
        "sys.stderr.write('\\nMODULES ' + json.dumps(sorted(sys.modules)) + '\\n')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, *args],
        env=cli.env(),
        cwd=cli.cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )
    marker = done.stderr.rindex("MODULES ")
    return {name.split(".")[0] for name in json.loads(done.stderr[marker + 8 :])}


def test_importing_the_cli_loads_nothing_heavy(cli: Cli) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import json, sys, slm_mesh.cli; print(json.dumps(list(sys.modules)))",
        ],
        env=cli.env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    loaded = {name.split(".")[0] for name in json.loads(done.stdout)}
    assert not loaded & {*HEAVY, "cyclopts"}


@pytest.mark.parametrize(
    "args",
    [(), ("--json",), ("status",), ("status", "--json"), ("version",), ("version", "--json")],
)
def test_the_fast_commands_load_neither_cyclopts_nor_anything_heavy(
    cli: Cli, broker: subprocess.Popen[bytes], args: tuple[str, ...]
) -> None:
    assert not loaded_after(cli, *args) & {*HEAVY, "cyclopts"}


def test_other_commands_load_cyclopts_but_not_mcp_or_pydantic(
    cli: Cli, broker: subprocess.Popen[bytes]
) -> None:
    loaded = loaded_after(cli, "peers", "--json")
    assert "cyclopts" in loaded
    assert not loaded & set(HEAVY)


@pytest.mark.parametrize("args", [["version"], ["version", "--json"]])
def test_the_fast_path_prints_what_the_app_prints(
    capsys: pytest.CaptureFixture[str], args: list[str]
) -> None:
    assert slm_mesh.cli.main(args) == 0
    fast = capsys.readouterr()
    assert cli_app.main(args) == 0
    assert capsys.readouterr() == fast


def test_the_fast_status_is_the_apps_status(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    broker: subprocess.Popen[bytes],
    settings: Settings,
) -> None:
    monkeypatch.setenv("SLM_MESH_DATA_DIR", str(settings.data_dir))
    assert slm_mesh.cli.main(["status", "--json"]) == 0
    fast = json.loads(capsys.readouterr().out)
    assert cli_app.main(["status", "--json"]) == 0
    slow = json.loads(capsys.readouterr().out)
    for doc in (fast, slow):
        del doc["uptime_s"]
        del doc["activity"]  # counts calls, this test's own among them
        # The first command's connection may not be closed broker-side yet.
        assert doc["counts"].pop("connections") in (1, 2)
    assert fast == slow
    monkeypatch.setenv("SLM_MESH_DATA_DIR", str(settings.data_dir / "nowhere"))
    assert slm_mesh.cli.main(["status"]) == cli_app.main(["status"]) == 3


def run_on_a_terminal(cli: Cli, *args: str, **env: str) -> str:
    """Run the CLI with stdout and stderr on a pseudo-terminal; return what it wrote."""
    primary, secondary = pty.openpty()
    proc = subprocess.Popen(
        cli.argv(*args),
        env=cli.env(**{"TERM": "xterm", **env}),
        cwd=cli.cwd,
        stdin=subprocess.DEVNULL,
        stdout=secondary,
        stderr=secondary,
    )
    os.close(secondary)
    chunks = []
    try:
        while True:
            try:
                chunk = os.read(primary, 65536)
            except OSError:  # EIO: the terminal's other side is closed
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(primary)
        proc.wait(timeout=60)
    return b"".join(chunks).decode()


def test_colour_only_on_a_terminal_and_never_with_no_color(
    cli: Cli, broker: subprocess.Popen[bytes]
) -> None:
    assert "\x1b[" in run_on_a_terminal(cli, "status")
    assert "\x1b[" not in run_on_a_terminal(cli, "status", NO_COLOR="1")
    assert "\x1b[" not in run_on_a_terminal(cli, "status", TERM="dumb")
    assert "\x1b[" not in cli.ok("status")


def test_errors_are_red_on_a_terminal(cli: Cli, tmp_path: Path) -> None:
    out = run_on_a_terminal(cli, "status")
    assert "\x1b[31;1mslm-mesh: error:\x1b[0m no slm-mesh broker is running" in out
