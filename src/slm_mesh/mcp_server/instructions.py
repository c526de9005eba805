"""The server's ``instructions``: a few lines, in the agent's system prompt, on when to use
which tool. Kept apart from the tool schemas so answering ``initialize`` imports nothing
else."""

INSTRUCTIONS = """\
You share this machine with other AI coding sessions through slm-mesh.
- At start and when your task changes: mesh_summary (what you are doing).
- Before editing a file others may touch: mesh_lock action=lock; unlock when done. \
If it is locked, work elsewhere or ask the holder with mesh_send.
- mesh_peers shows who works where; mesh_send messages a peer or "all".
- The person at this machine's shell is the peer "person" (or their name): \
mesh_send to="person" always reaches them (they read it with slm-mesh inbox).
- Messages arrive as channel events from slm-mesh, or as a notice at the end of a \
tool result: read them with mesh_inbox; answer with mesh_send to=<its from> reply_to=<its id>.
- mesh_state shares small facts (versions, ports); mesh_events shows what changed."""
