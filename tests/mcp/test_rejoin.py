"""A session that ended under the MCP server's open connection (``peer.detached`` "ended"
with cause "grace_expired": its broker was cut off from the shared store past the grace)
is joined again at once, and a tool call the broker refused meanwhile for want of a
session is sent again rather than failed (mcp_server/link.py rule 6, session.py rule 3).

Here the broker is in process on SQLite and the session is ended as a broker of a shared
store ends it when its link comes back (``Brokers.rejoin`` finding it gone): the same
``peer.detached`` reaches the server. tests/mcp/test_shared_store.py does it for real.
"""

from __future__ import annotations

from slm_mesh.config import Settings
from tests.mcp.test_untasked import Served, served

JOINED_AGAIN = "your mesh session ended while this machine's broker was cut off"


def end_the_session_under_it(s: Served) -> str:
    """End the server's session as a broker gets its link back to find it gone, without
    letting the server read the ``peer.detached`` yet (nothing here awaits)."""
    broker = s.broker.broker
    peer_id = s.session.peer_id
    assert peer_id is not None
    broker.store.update_peer(peer_id, state="gone")
    assert broker.mesh.brokers.rejoin(broker.now()) == [peer_id]
    broker.apply_effects()  # the peer.detached is queued before any later answer
    return peer_id


async def test_a_call_sent_without_a_task_as_the_session_ended_is_sent_again_once_back(
    settings: Settings,
) -> None:
    async with served(settings) as s:
        name = s.session.peer_name
        ended = end_the_session_under_it(s)
        assert s.take(1, "mesh_state", action="set", key="k", value=1) == 0
        answer = (await s.answer(1))["result"]
        assert answer["isError"] is False, answer
        assert answer["structuredContent"]["version"] == 1
        assert any(JOINED_AGAIN in c["text"] for c in answer["content"])
        assert (s.session.peer_name, s.session.peer_id != ended) == (name, True)


async def test_a_call_in_a_task_as_the_session_ended_is_sent_again_once_back(
    settings: Settings,
) -> None:
    async with served(settings) as s:
        ended = end_the_session_under_it(s)
        result = await s.box.tools.run("mesh_state", {"action": "set", "key": "k", "value": 2})
        assert result.is_error is False, result.texts
        assert any(JOINED_AGAIN in text for text in result.texts)
        assert s.session.peer_id != ended
        again = await s.box.tools.run("mesh_status", {})
        assert not any(JOINED_AGAIN in text for text in again.texts)  # said once
