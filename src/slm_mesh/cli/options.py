"""The CLI's shared option types and help groups (cyclopts annotations).

The choices are the method table's (:mod:`slm_mesh.protocol.table`), spelled as
``Literal`` types so cyclopts shows and checks them; a test keeps the two equal.
"""

from __future__ import annotations

from typing import Annotated, Literal

import cyclopts
from cyclopts import validators

from slm_mesh.protocol.table import MAX_TTL_S, MAX_WAIT_S

# Out-of-range values are usage errors (exit 2, naming the option), checked before any
# broker call: the same bounds as the method table's.
AT_LEAST_ONE = validators.Number(gte=1)
NOT_NEGATIVE = validators.Number(gte=0)
POSITIVE = validators.Number(gt=0)
TTL_RANGE = validators.Number(gt=0, lte=MAX_TTL_S)
WAIT_RANGE = validators.Number(gte=0, lte=MAX_WAIT_S)

Scope = Literal["mesh", "machine", "directory", "repo"]
MessageType = Literal["text", "json", "command", "alert"]
LockMode = Literal["exclusive", "shared"]
Platform = Literal["systemd", "launchd"]
HookAgent = Literal["claude", "codex", "gemini", "cursor"]
InstallAgent = Literal["claude", "codex", "gemini", "cursor", "git"]
EventType = Literal[
    "peer_joined",
    "peer_left",
    "peer_updated",
    "message_sent",
    "state_changed",
    "state_deleted",
    "lock_acquired",
    "lock_released",
    "lock_expired",
    "file_edited",
]

Json = Annotated[
    bool,
    cyclopts.Parameter(
        name="--json",
        negative=(),
        show_default=False,
        help="Print JSON instead of text (shapes: JSON OUTPUT in man slm-mesh).",
    ),
]
Namespace = Annotated[str, cyclopts.Parameter(name=["--namespace", "-n"], help="State namespace.")]
IfVersion = Annotated[
    int | None,
    cyclopts.Parameter(
        validator=NOT_NEGATIVE,
        help="Compare-and-set: only if the key's version is this (0: it must not exist).",
    ),
]

Body = Annotated[
    str,
    cyclopts.Parameter(allow_leading_hyphen=True, help="The message; - reads standard input."),
]

BROKER = cyclopts.Group("Broker", sort_key=1)
TALK = cyclopts.Group("Peers and messages", sort_key=2)
SHARED = cyclopts.Group("State, locks and events", sort_key=3)
SETUP = cyclopts.Group("Set-up", sort_key=4)
