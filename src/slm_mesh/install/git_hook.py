"""``slm-mesh install git``: a pre-commit hook in the current repository that refuses a
commit of files another live session holds (``slm-mesh hook pre-commit --agent git``).

Rules:
1. The hooks folder is git's own answer (``git rev-parse --git-path hooks``): it follows
   ``core.hooksPath`` and worktrees.
2. A pre-commit hook that is already there and is not ours is kept: it moves to
   ``pre-commit.slm-mesh-chained`` (with its mode: one switched off by ``chmod -x`` stays
   off) and ours runs it first (its refusal stands). Uninstalling puts it back, mode and
   all. Ours is executable whatever mode the file it replaces had.
3. Installing again rewrites ours only.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

import slm_mesh.hooks
from slm_mesh.install import Plan, Step
from slm_mesh.install.files import Change, ConfigError, read_text

MARKER = "# slm-mesh: refuse a commit of files another live session holds"
CHAINED = "pre-commit.slm-mesh-chained"
EXECUTABLE = 0o755


def script() -> str:
    run = Path(slm_mesh.hooks.__file__).with_name("run.py")
    command = shlex.join([sys.executable, "-I", "-S", str(run), "pre-commit", "--agent", "git"])
    return f"""#!/bin/sh
{MARKER}
# (slm-mesh install git; slm-mesh uninstall git puts back the hook that was here before)
chained="$(dirname "$0")/{CHAINED}"
if [ -x "$chained" ]; then
    "$chained" "$@" || exit $?
fi
git diff --cached --name-only -z | {command}
"""


def hooks_dir(cwd: Path) -> Path:
    try:
        done = subprocess.run(
            ["git", "rev-parse", "--git-path", "hooks"],
            cwd=cwd,
            capture_output=True,
            text=True,
            check=False,
        )
    except FileNotFoundError:
        raise ConfigError("git is not installed (or not on PATH)") from None
    if done.returncode != 0:
        raise ConfigError(f"{cwd} is not in a git repository: {done.stderr.strip()}")
    path = Path(done.stdout.strip())
    return path if path.is_absolute() else (cwd / path).resolve()


def is_ours(text: str | None) -> bool:
    return text is not None and MARKER in text


def plan(*, install: bool, cwd: Path) -> Plan:
    folder = hooks_dir(cwd)
    hook, chained = folder / "pre-commit", folder / CHAINED
    current, kept = read_text(hook), read_text(chained)
    out = Plan("git", install)
    if install:
        if current is not None and not is_ours(current):
            if kept is not None:
                raise ConfigError(
                    f"{hook} is not ours and {chained} exists already: nothing was changed"
                )
            mode = hook.stat().st_mode & 0o7777
            out.steps.append(Step(Change(chained, None, current, mode), "the hook that was there"))
        out.steps.append(Step(Change(hook, current, script(), EXECUTABLE), "pre-commit hook"))
    elif is_ours(current):
        its_mode = chained.stat().st_mode & 0o7777 if kept is not None else None
        out.steps.append(Step(Change(hook, current, kept, its_mode), "pre-commit hook"))
        if kept is not None:
            out.steps.append(Step(Change(chained, kept, None), "put back the hook that was there"))
    else:
        out.steps.append(Step(Change(hook, current, current), "pre-commit hook (not ours)"))
    return out
