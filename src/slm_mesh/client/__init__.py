"""Clients of the broker: :class:`MeshClient` (async, anyio) and :class:`BlockingClient`
(stdlib sockets, for scripts and the CLI), plus address resolution and broker autostart.

Importing this package costs only the stdlib: the async names (``MeshClient``,
``Notifications``, ``ensure_broker``) load anyio on first use, so the CLI's fast path never
pays for it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from slm_mesh.client.address import Address, BrokerUnreachable, resolve
from slm_mesh.client.autostart import BrokerStartFailed, ensure_broker_sync
from slm_mesh.client.blocking import BlockingClient
from slm_mesh.client.wire import ConnectionLost

if TYPE_CHECKING:
    from slm_mesh.client.aio import MeshClient, Notifications
    from slm_mesh.client.autostart import ensure_broker

__all__ = [
    "Address",
    "BlockingClient",
    "BrokerStartFailed",
    "BrokerUnreachable",
    "ConnectionLost",
    "MeshClient",
    "Notifications",
    "ensure_broker",
    "ensure_broker_sync",
    "resolve",
]


def __getattr__(name: str) -> Any:
    if name in ("MeshClient", "Notifications"):
        from slm_mesh.client import aio

        return getattr(aio, name)
    if name == "ensure_broker":
        from slm_mesh.client import autostart

        return autostart.ensure_broker
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
