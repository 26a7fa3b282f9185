"""What the server's operations raise; each maps to one HTTP status (``app.py``) and a one-line message."""

from __future__ import annotations


class NotReady(RuntimeError):
    """The engine (or index) is still starting, or failed to start; the message says which (503)."""


class NoIndex(RuntimeError):
    """Documents were asked for but the server has no index (404)."""


class AnswerFailed(RuntimeError):
    """The answer broke after it started; the message is user-facing. ``status``: what a non-streamed answer gets
    (422 for bad input found late, 503 when the engine died, 504 past the time limit, else 500)."""

    def __init__(self, message: str, status: int = 500) -> None:
        super().__init__(message)
        self.status = status


class UnsupportedDocument(ValueError):
    """Not a file type the loaders read (415)."""


class DocumentTooLarge(ValueError):
    """Over the upload size limit (413)."""


class DocumentRejected(ValueError):
    """The file was read but nothing could be indexed from it (empty, unreadable PDF, ...) (422)."""


class UnknownDocument(LookupError):
    """No document with that id (404)."""


class DocumentConflict(ValueError):
    """Two files of one upload would be stored under the same name (409): nothing is written."""


class StorageUnavailable(RuntimeError):
    """The index cannot be written (disk full, read-only folder): nothing was changed (507)."""
