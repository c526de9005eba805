"""Every method of the table is answered by exactly one side: the broker or the mesh."""

from __future__ import annotations

from slm_mesh.broker.activity import Activity
from slm_mesh.broker.own_methods import HANDLERS
from slm_mesh.config import Limits, Settings
from slm_mesh.mesh import Mesh
from slm_mesh.protocol.table import METHODS
from slm_mesh.store import Store
from tests.wire import in_process_broker


def test_each_method_has_one_handler() -> None:
    store = Store.open(None)
    try:
        mesh = Mesh(store, Limits(), grace_s=30, lock_ttl_s=600)
        assert set(HANDLERS).isdisjoint(mesh.methods)
        assert set(HANDLERS) | mesh.methods == set(METHODS)
    finally:
        store.close()


async def test_status_counts_calls_and_messages_in_total_and_per_minute(
    settings: Settings,
) -> None:
    async with in_process_broker(settings) as b:
        a, c = await b.connect(), await b.connect()
        await a.register("a")
        await c.register("c")
        before = (await a.call("mesh.status"))["activity"]
        for _ in range(3):
            await a.call("message.send", to="c", body="hi")
        await a.call("message.send", to="all", body="everyone")
        after = (await a.call("mesh.status"))["activity"]
    # Four sends and the status call itself.
    assert after["calls"] - before["calls"] == 5
    assert after["messages"] - before["messages"] == 4
    assert after["minute_s"] == 60
    for kind in ("calls", "messages"):
        per_minute = after["per_minute"][kind]
        assert len(per_minute) == 16
        assert sum(per_minute) == after[kind]  # the broker is younger than 15 minutes


def test_minutes_without_activity_count_as_zeros() -> None:
    activity = Activity(now=0.0)
    activity.count_call(10.0)
    activity.count_messages(2, 70.0)
    activity.count_call(75.0)
    view = activity.view(now=200.0)  # minute 3: two empty minutes between
    assert view["per_minute"]["calls"][-4:] == [1, 1, 0, 0]
    assert view["per_minute"]["messages"][-4:] == [0, 2, 0, 0]
    assert (view["calls"], view["messages"]) == (2, 2)
    later = activity.view(now=10_000.0)  # far beyond the window: all zeros, totals kept
    assert later["per_minute"]["calls"] == [0] * 16
    assert later["calls"] == 2
