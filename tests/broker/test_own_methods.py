"""Every method of the table is answered by exactly one side: the broker or the mesh."""

from __future__ import annotations

from slm_mesh.broker.own_methods import HANDLERS
from slm_mesh.config import Limits
from slm_mesh.mesh import Mesh
from slm_mesh.protocol.table import METHODS
from slm_mesh.store import Store


def test_each_method_has_one_handler() -> None:
    store = Store.open(None)
    try:
        mesh = Mesh(store, Limits(), grace_s=30, lock_ttl_s=600)
        assert set(HANDLERS).isdisjoint(mesh.methods)
        assert set(HANDLERS) | mesh.methods == set(METHODS)
    finally:
        store.close()
