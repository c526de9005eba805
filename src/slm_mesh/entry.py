"""The ``slm-mesh`` command (``bin/slm-mesh``). ``slm-mesh mcp`` (what every agent starts) goes
straight to the stdlib-only launcher, ``slm-mesh hook …`` (what the agents' hooks run) to the
stdlib-only hook; everything else loads the cyclopts CLI."""

from __future__ import annotations

import sys


def main() -> int:
    if sys.argv[1:] == ["mcp"]:
        from slm_mesh.zygote.launcher import launch

        return launch()
    if sys.argv[1:2] == ["hook"] and "--help" not in sys.argv and "-h" not in sys.argv:
        from slm_mesh.hooks.main import run as run_hook

        run_hook(sys.argv[2:])
    from slm_mesh.cli import main as cli_main

    return cli_main()
