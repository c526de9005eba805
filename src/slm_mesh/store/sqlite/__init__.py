"""The embedded store: one SQLite file (WAL) written by the one broker of the machine."""

from slm_mesh.store.sqlite.schema import SCHEMA_VERSION
from slm_mesh.store.sqlite.store import SQLiteStore

__all__ = ["SCHEMA_VERSION", "SQLiteStore"]
