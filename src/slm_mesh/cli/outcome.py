"""Exit codes, and the one place that turns a command's failure into one.

Rules:
1. ``0`` ok; ``1`` the broker answered with an error (or a check failed, e.g. ``lock check``
   found a conflict); ``2`` usage (bad arguments, bad environment); ``3`` no broker answers
   (including a data dir we may not use). Commands that run a child (``lock acquire --
   COMMAND``) exit with the child's status instead.
2. Every failure prints one line on stderr (``slm-mesh: error: …``) saying what went wrong
   and what to do. With ``--json`` it also prints ``{"error": {...}}`` on stdout, so a
   script that parses stdout always gets a document: ``name`` is the error's name in the
   wire contract (``lock_conflict``, ``peer_not_found``…) or ``broker_unreachable`` /
   ``usage``; ``code`` is the JSON-RPC code or null; ``data`` is the broker's.
3. Ctrl-C ends a command quietly with 130, except where stopping with Ctrl-C is the normal
   way out (``events --follow``, ``inbox --follow``, holding a lock): those exit 0.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from slm_mesh.cli.render import Output
from slm_mesh.client.address import BrokerUnreachable
from slm_mesh.client.wire import ConnectionLost
from slm_mesh.protocol.errors import ERROR_NAMES, MeshError

OK = 0
FAILED = 1
USAGE = 2
UNREACHABLE = 3
INTERRUPTED = 130

Command = Callable[[Output], int]
"""A command's body: it prints through the Output and returns its exit status."""


class CliError(Exception):
    """A failure the CLI reports itself (not one the broker sent)."""

    def __init__(
        self, message: str, exit_code: int = FAILED, *, name: str | None = None, data: Any = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code
        self.name = name or {UNREACHABLE: "broker_unreachable", USAGE: "usage"}.get(
            exit_code, "failed"
        )
        self.data = data


def unreachable(message: str) -> CliError:
    return CliError(message, UNREACHABLE)


def usage(message: str) -> CliError:
    return CliError(message, USAGE)


def report(out: Output, exc: BaseException) -> int:
    """Print ``exc`` the way rule 2 says and return its exit code."""
    if isinstance(exc, CliError):
        payload = {"name": exc.name, "code": None, "message": exc.message, "data": exc.data}
        exit_code = exc.exit_code
    elif isinstance(exc, MeshError):
        payload = {
            "name": ERROR_NAMES.get(exc.code, "error"),
            "code": exc.code,
            "message": exc.message,
            "data": exc.data,
        }
        exit_code = FAILED
    elif isinstance(exc, BrokerUnreachable):
        payload = {"name": "broker_unreachable", "code": None, "message": str(exc), "data": None}
        exit_code = UNREACHABLE
    elif isinstance(exc, ConnectionLost):
        message = f"lost the connection to the broker: {exc}"
        payload = {"name": "connection_lost", "code": None, "message": message, "data": None}
        exit_code = UNREACHABLE
    elif isinstance(exc, TimeoutError):
        message = "the broker did not answer in time (is it overloaded or stuck?)"
        payload = {"name": "timeout", "code": None, "message": message, "data": None}
        exit_code = UNREACHABLE
    else:
        raise exc
    out.error(str(payload["message"]))
    if out.as_json:
        out.json({"error": payload})
    return exit_code


def run(command: Command, as_json: bool) -> int:
    """Run one command with its output, mapping failures to exit codes (rules 1-3)."""
    out = Output(as_json)
    try:
        return command(out)
    except (CliError, MeshError, BrokerUnreachable, ConnectionLost, TimeoutError) as exc:
        return report(out, exc)
    except KeyboardInterrupt:
        out.stderr.write("\n")
        return INTERRUPTED
    except BrokenPipeError:
        # Output piped into `head` and closed: not an error of ours. Point stdout at
        # /dev/null so the interpreter's final flush does not complain again.
        _silence_stdout()
        return OK


def _silence_stdout() -> None:
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
