"""The cyclopts app and its commands."""

from __future__ import annotations

from typing import Annotated

import cyclopts

from slm_mesh.config import VERSION, Settings

app = cyclopts.App(
    name="slm-mesh",
    help="Coordination layer for AI coding sessions on one machine.",
    version=VERSION,
)


@app.command
def broker(
    *,
    idle_exit: Annotated[
        float | None,
        cyclopts.Parameter(help="Exit this many seconds after the last connection closes."),
    ] = None,
    tcp: Annotated[
        bool, cyclopts.Parameter(help="Also listen on TCP 127.0.0.1 (token required).")
    ] = False,
    tcp_host: Annotated[str, cyclopts.Parameter(help="Loopback address for --tcp.")] = "127.0.0.1",
    verbose: Annotated[bool, cyclopts.Parameter(help="Log debug messages.")] = False,
) -> int:
    """Run the broker in the foreground."""
    from slm_mesh.broker.main import run_broker, setup_logging

    setup_logging(verbose)
    return run_broker(Settings.from_env(), idle_exit_s=idle_exit, tcp=tcp, tcp_host=tcp_host)


def main(argv: list[str] | None = None) -> int:
    result = app(argv, result_action="return_value")
    return result if isinstance(result, int) else 0
