"""Errors a user can act on. Each carries a one-line message the CLI prints as is (no traceback)."""

from __future__ import annotations


class RetrievalError(Exception):
    """Base class: a clear, user-facing problem with an index or its input."""


class IndexNotFoundError(RetrievalError):
    pass


class EmptyIndexError(RetrievalError):
    pass


class IndexLockedError(RetrievalError):
    pass


class EmbeddingModelMismatchError(RetrievalError):
    pass


class IndexCorruptError(RetrievalError):
    pass


class InputPathError(RetrievalError):
    """A path given to ingest does not exist or cannot be read."""


class DocumentNotFoundError(RetrievalError):
    pass


class LoadError(RetrievalError):
    """One file could not be loaded (its ingest fails with this reason; the others proceed)."""


class IndexWriteError(RetrievalError):
    """The index folder cannot be written (disk full, read-only, permission denied). Nothing half-written:
    the index holds what was committed before the failure. ``reason`` is the short cause, without paths."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason
