"""How long Claude's Stop hook waits for a message (``asyncRewake``): the hook reads it,
and ``slm-mesh install`` writes Claude Code a hook timeout past it, so Claude Code never
kills a hook that is still waiting. No imports: the hook's path stays lean."""

# At most this long (an idle session, then it gives up).
WAKE_IDLE_S = 8 * 3600.0
# The environment variable that sets it shorter.
WAKE_IDLE_ENV = "SLM_MESH_WAKE_IDLE_S"
