"""The man pages in man/ are generated from the CLI and the method table, and current."""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

from slm_mesh.cli import manpages
from slm_mesh.cli.app import app
from slm_mesh.protocol.errors import ERROR_NAMES
from slm_mesh.protocol.table import EVENT_TYPES, METHOD_LIST

REPO = Path(__file__).resolve().parents[2]
MAN = REPO / "man"


def test_the_checked_in_man_pages_are_what_the_generator_writes() -> None:
    assert manpages.stale(MAN) == [], "run: python -m slm_mesh.cli.manpages"


def test_a_changed_command_makes_the_pages_stale(tmp_path: Path) -> None:
    for name in (*manpages.PAGES, *(f"{p}.rst" for p in manpages.PAGES)):
        shutil.copy(MAN / name, tmp_path / name)
    text = (tmp_path / "slm-mesh.1").read_text()
    (tmp_path / "slm-mesh.1").write_text(text.replace("Ask the broker to stop", "Stop it"))
    assert manpages.stale(tmp_path) == ["slm-mesh.1"]
    assert manpages.main(["--check", "--dir", str(tmp_path)]) == 1
    manpages.write(tmp_path)
    assert manpages.main(["--check", "--dir", str(tmp_path)]) == 0


def _commands(prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = []
    sub = app
    for part in prefix:
        sub = sub[part]
    for name in sub:
        if name.startswith("-"):
            continue
        found.append((*prefix, name))
        if sub[name].default_command is None:  # a group: state, lock, service
            found.extend(_commands((*prefix, name)))
    return found


def test_the_cli_page_has_a_section_for_every_command() -> None:
    roff = (MAN / "slm-mesh.1").read_text()
    commands = _commands()
    assert ("lock", "acquire") in commands and ("service", "status") in commands
    for command in commands:
        title = " ".join(("slm-mesh", *command)).replace("-", "\\-")
        assert f".SS {title}\n" in roff, command


def test_the_protocol_page_lists_every_method_error_and_event_type() -> None:
    roff = re.sub(r"\\f[BIPR]", "", (MAN / "slm-mesh-protocol.7").read_text()).replace("\\-", "-")
    for method in METHOD_LIST:
        assert method.name in roff
        for param in method.params:
            assert param.name in roff
    for code, name in ERROR_NAMES.items():
        assert f"{code} {name}" in roff
    for event_type in EVENT_TYPES:
        assert event_type in roff
    assert "UNIX-CONNECT" in roff


@pytest.mark.needs("groff")
@pytest.mark.parametrize("page", manpages.PAGES)
def test_groff_formats_the_pages_without_a_warning(page: str) -> None:
    done = subprocess.run(
        ["groff", "-man", "-ww", "-z", str(MAN / page)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0
    assert done.stderr == ""


@pytest.mark.parametrize("page", manpages.PAGES)
def test_the_pages_are_ascii_roff(page: str) -> None:
    (MAN / page).read_bytes().decode("ascii")


def test_the_package_installs_the_man_pages_where_man_finds_them() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    shared = project["tool"]["hatch"]["build"]["targets"]["wheel"]["shared-data"]
    assert shared["man/slm-mesh.1"] == "share/man/man1/slm-mesh.1"
    assert shared["man/slm-mesh-protocol.7"] == "share/man/man7/slm-mesh-protocol.7"


# Read by the broker but documented elsewhere: the limits as one family (SLM_MESH_<NAME>,
# its own paragraph), the person at the shell in the README's "From the shell".
_DOCUMENTED_ELSEWHERE = frozenset({"SLM_MESH_MAX_LINE_BYTES", "SLM_MESH_PERSON"})


def _broker_variables() -> set[str]:
    """Every ``SLM_MESH_*`` variable named in the broker's settings, its store and itself."""
    src = REPO / "src" / "slm_mesh"
    files = [src / "config.py", src / "locations.py", *src.glob("broker/*.py")]
    files += src.glob("store/**/*.py")
    names = set()
    for path in files:
        names.update(re.findall(r"SLM_MESH_[A-Z_]*[A-Z]", path.read_text()))
    return names - _DOCUMENTED_ELSEWHERE


def test_every_variable_the_broker_reads_is_in_the_readme_table_and_the_man_page() -> None:
    names = _broker_variables()
    assert {"SLM_MESH_STORE", "SLM_MESH_MESH", "SLM_MESH_HOST", "SLM_MESH_SWEEP_S"} <= names
    readme = (REPO / "README.md").read_text()
    table = readme.split("## Files and environment", 1)[1].lstrip().split("\n\n", 1)[0]
    rst = (MAN / "slm-mesh.1.rst").read_text()
    environment = rst.split("\nENVIRONMENT\n", 1)[1].split("\nFILES\n", 1)[0]
    for name in sorted(names):
        assert f"`{name}` |" in table, f"{name} is not in the README's environment table"
        assert f"**{name}**" in environment, f"{name} is not in the man page's ENVIRONMENT"
