"""What a store's failures mean for the user, the same for every store."""

from __future__ import annotations


class SchemaError(Exception):
    """The database can't be used by this version of slm-mesh."""


class StorageError(Exception):
    """The file system refused to let the database be opened or written (disk full,
    read-only, I/O error). Nothing was changed; the message says what to do."""


class StoreUnreachable(Exception):
    """The shared store (PostgreSQL) can't be reached right now. Nothing of the failed
    call was committed; ``retry_after`` says when trying again makes sense (seconds)."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after
