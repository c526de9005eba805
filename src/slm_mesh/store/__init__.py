"""Storage behind one interface (:class:`Store`): SQLite, the embedded default
(:mod:`.sqlite`), or PostgreSQL, shared by the brokers of several machines
(:mod:`.postgresql`). The only package that speaks SQL."""

from slm_mesh.store.base import Row, Store
from slm_mesh.store.errors import SchemaError, StorageError, StoreUnreachable
from slm_mesh.store.sqlite import SCHEMA_VERSION, SQLiteStore

__all__ = [
    "SCHEMA_VERSION",
    "Row",
    "SQLiteStore",
    "SchemaError",
    "StorageError",
    "Store",
    "StoreUnreachable",
]
