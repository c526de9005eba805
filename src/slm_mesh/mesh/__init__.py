"""The mesh rules: peers, sessions, messages, state, locks and events.

Pure and synchronous: time comes in as an argument and side effects go out as values.
"""

from slm_mesh.mesh.context import (
    ArmTimer,
    Deliver,
    Detach,
    DisarmTimer,
    Effect,
    Emit,
    Granted,
    ReadElsewhere,
    UnwatchProcess,
    Waiter,
    WatchProcess,
)
from slm_mesh.mesh.core import Mesh

__all__ = [
    "ArmTimer",
    "Deliver",
    "Detach",
    "DisarmTimer",
    "Effect",
    "Emit",
    "Granted",
    "Mesh",
    "ReadElsewhere",
    "UnwatchProcess",
    "Waiter",
    "WatchProcess",
]
