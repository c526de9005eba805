"""The shared store: one mesh in a PostgreSQL database, for the brokers of several machines."""

from slm_mesh.store.postgresql.store import PostgresStore

__all__ = ["PostgresStore"]
