"""Fast start for ``slm-mesh mcp``: a warm, pre-imported process forks a ready MCP server
per agent session and hands it the session's stdin and stdout (SCM_RIGHTS), the way
Mercurial's ``chg`` avoids start-up cost. The launcher is stdlib only; if the warm process
is missing, broken or disabled (``SLM_MESH_NO_ZYGOTE=1``) it runs the server itself.
"""
