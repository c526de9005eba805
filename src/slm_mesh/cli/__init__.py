"""The ``slm-mesh`` command line.

A person waits for every command, so the start-up path is kept short: nothing here imports
mcp or pydantic, and the invocations people and scripts run most (``slm-mesh``,
``slm-mesh status``, ``slm-mesh version``, each with or without ``--json``, and
``--version``) skip cyclopts too, whose import alone costs more than the rest of the
command. They run the very functions the cyclopts app runs for the same arguments; anything
else, including ``--help``, goes through the app (:mod:`slm_mesh.cli.app`).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence


def _fast(argv: Sequence[str]) -> int | None:
    """The exit status of ``argv`` if it is one of the fast forms, else None."""
    args = tuple(argv)
    as_json = False
    if args and args[-1] == "--json":
        as_json, args = True, args[:-1]
    if args == ("--version",) and not as_json:
        from slm_mesh.config import VERSION

        print(VERSION)
        return 0
    if args not in ((), ("status",), ("version",)):
        return None
    from slm_mesh.cli import cmd_broker, outcome

    command = {(): cmd_broker.bare, ("status",): cmd_broker.status}.get(args, cmd_broker.version)
    return outcome.run(command, as_json)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``slm-mesh`` with ``argv`` (``sys.argv[1:]`` when None); return the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    status = _fast(args)
    if status is not None:
        return status
    from slm_mesh.cli.app import main as app_main

    return app_main(args)


__all__ = ["main"]
