"""slm-mesh: the coordination layer for AI coding sessions on one machine."""

__version__ = "0.1.0"  # the one place the version is written (pyproject reads it too)

__all__ = ["__version__"]
