"""The broker daemon: the trio shell around the mesh (listeners, connections, timers)."""
