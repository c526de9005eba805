"""The ``slm-mesh`` command (``bin/slm-mesh``). ``slm-mesh mcp`` (what every agent starts) goes
straight to the stdlib-only launcher; everything else loads the cyclopts CLI."""

from __future__ import annotations

import sys


def main() -> int:
    if sys.argv[1:] == ["mcp"]:
        from slm_mesh.zygote.launcher import launch

        return launch()
    from slm_mesh.cli import main as cli_main

    return cli_main()
