"""SQLite storage (through sqlite-utils): schema, migrations and every query."""

from slm_mesh.store.db import Store
from slm_mesh.store.opening import Row
from slm_mesh.store.schema import SCHEMA_VERSION, SchemaError, StorageError

__all__ = ["SCHEMA_VERSION", "Row", "SchemaError", "StorageError", "Store"]
