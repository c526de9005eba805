"""The ``slm-mesh`` command line.

A person waits for every command, so the start-up path is kept short: nothing here imports
mcp or pydantic, and the invocations people and scripts run most (``slm-mesh``,
``slm-mesh status``, ``slm-mesh version``, each with or without ``--json``, ``--version``,
and ``slm-mesh broker [--idle-exit N]`` as auto-start runs it) skip cyclopts too, whose
import alone costs more than the rest of the command. They run the very functions the
cyclopts app runs for the same arguments; anything else, including ``--help``, goes
through the app (:mod:`slm_mesh.cli.app`).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence


def _fast_broker(args: Sequence[str]) -> int | None:
    """``slm-mesh broker [--idle-exit N]`` as auto-start runs it (every agent's first
    session waits for it): straight to the broker, without cyclopts. Any other form of the
    command (``--tcp``, ``--help``…) goes through the app."""
    if not args or args[0] != "broker":
        return None
    rest = list(args[1:])
    idle_exit: float | None = None
    if rest[:1] == ["--idle-exit"] and len(rest) == 2:
        try:
            idle_exit = float(rest[1])
        except ValueError:
            return None
        rest = []
    if rest:
        return None
    from slm_mesh.broker.main import run_broker, setup_logging
    from slm_mesh.config import Settings

    setup_logging(False)
    return run_broker(Settings.from_env(), idle_exit_s=idle_exit)


def _fast(argv: Sequence[str]) -> int | None:
    """The exit status of ``argv`` if it is one of the fast forms, else None."""
    broker = _fast_broker(argv)
    if broker is not None:
        return broker
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


def json_after_command(args: list[str]) -> list[str]:
    """``--json`` given before the command (``slm-mesh --json peers``, as ``--help`` lists it
    at the top) moved after it, where each command takes it: to the end, or before ``--``
    (which ends the options of ``lock acquire``)."""
    if len(args) < 2 or args[0] != "--json" or args[1].startswith("-"):
        return args
    rest = args[1:]
    end = rest.index("--") if "--" in rest else len(rest)
    return [*rest[:end], "--json", *rest[end:]]


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``slm-mesh`` with ``argv`` (``sys.argv[1:]`` when None); return the exit status."""
    args = json_after_command(list(sys.argv[1:] if argv is None else argv))
    status = _fast(args)
    if status is not None:
        return status
    from slm_mesh.cli.app import main as app_main

    return app_main(args)


__all__ = ["main"]
