"""``slm-mesh top``: hands the terminal to the live view (:mod:`slm_mesh.top`).

Textual is imported here, on the way into ``top`` only, so no other command pays for it.
"""

from __future__ import annotations

import sys

from slm_mesh.cli.connect import load_settings
from slm_mesh.cli.outcome import FAILED, CliError, usage
from slm_mesh.cli.render import Output


def top(out: Output) -> int:
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise usage(
            "slm-mesh top needs a terminal; in a pipe or a script, "
            "use slm-mesh events --follow (or --json commands)"
        )
    settings = load_settings()
    from slm_mesh.top.app import run
    from slm_mesh.top.feed import IncompatibleBroker

    try:
        return run(settings)
    except IncompatibleBroker as exc:  # the terminal is back: say it there
        raise CliError(str(exc), FAILED, name="incompatible_broker") from None
