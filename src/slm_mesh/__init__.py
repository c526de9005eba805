"""slm-mesh: the coordination layer for AI coding sessions on one machine."""

from slm_mesh.config import VERSION as __version__

__all__ = ["__version__"]
