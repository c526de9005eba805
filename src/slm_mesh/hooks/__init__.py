"""``slm-mesh hook EVENT``: the command an agent's lifecycle hooks run.

It reads the agent's hook JSON on stdin, speaks to the broker as the agent's session and
answers in that agent's format: a briefing at session start, the messages that arrived at
each turn and after each tool call, an edit refused while another live session holds the
file, edits recorded, an idle Claude Code session woken when a message arrives, and the
session ended at once when the agent exits.

Rules:
1. Never in the agent's way: no broker, a socket error, a timeout or input it cannot parse
   end in exit 0 with nothing on stdout and a line in ``<data dir>/hooks.log``; all its
   exchanges with the broker together wait at most one budget
   (:func:`~slm_mesh.hooks.connection.timeout_s`: ``SLM_MESH_HOOK_TIMEOUT_MS``, 150 ms).
   Only session start may start the broker. An edit is refused only on positive
   knowledge of a live holder.
2. Fast: the path of every event imports the stdlib's C modules only (``posix``,
   ``_socket``, ``_json``), not :mod:`os`, :mod:`socket`, :mod:`json`, nor the MCP SDK,
   trio or pydantic (``tests/hooks/test_lean.py`` holds it to that). The agents run it as
   ``python -I -S .../slm_mesh/hooks/run.py``, which skips ``site`` (see ``run.py``).
3. One session per agent: the hook finds its mesh session by the agent's pid (its MCP server
   registered with the same pid) or the agent's own session id, and registers one tied to
   the agent's process when there is none (``peer.register`` with ``lifetime: process``).
"""
