"""The ``slm-mesh`` command line (cyclopts). Kept free of mcp/pydantic imports: a person
waits for every command."""

from slm_mesh.cli.app import main

__all__ = ["main"]
