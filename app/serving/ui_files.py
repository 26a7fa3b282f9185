"""Which file paths the UI's event handlers may touch: only files that this server's Gradio upload route stored.

A Gradio event carries a file as JSON (``{"path": ..., "meta": {"_type": "gradio.FileData"}}``) and any caller of
Gradio's API can write any path there. Gradio would copy such a path into its cache before the handler runs (its
own check is skipped for an app mounted with ``gr.mount_gradio_app``), so the handler could then read, index and
show any readable file of the server. sotrag checks every path itself, before Gradio sees the event and again in
the handler: the file must lie inside Gradio's upload folder (resolved, so a symlink cannot lead out), be a plain
file of this process's user, and be one the upload route handed out. Anything else is refused in one line.
"""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

MAX_PATH_CHARS = 4096


class UploadRefused(ValueError):
    """A path that is not a file this server's UI upload stored; the message is one line with no server path."""


def upload_folder(blocks: Any = None) -> Path:
    """Gradio's upload folder (``GRADIO_TEMP_DIR``, else ``<temp>/gradio``), resolved."""
    folder = getattr(blocks, "GRADIO_CACHE", None) or os.environ.get("GRADIO_TEMP_DIR") or (
        Path(tempfile.gettempdir()) / "gradio"
    )
    return Path(os.path.realpath(folder))


class UploadedFiles:
    """The paths Gradio's upload route stored for this app (``known``), checked against its upload folder."""

    def __init__(self, folder: Path, known: Callable[[], Iterable[str]] | None = None) -> None:
        self.folder = folder
        self.known = known  # None: any plain file inside the folder (a Blocks without Gradio's upload record)

    @classmethod
    def of(cls, blocks: Any) -> UploadedFiles:
        if not isinstance(getattr(blocks, "upload_file_set", None), set):
            return cls(upload_folder(blocks))
        return cls(upload_folder(blocks), lambda: blocks.upload_file_set)

    def check(self, value: object) -> Path:
        """The uploaded file ``value`` names, or UploadRefused."""
        if not isinstance(value, str) or not value or "\x00" in value or len(value) > MAX_PATH_CHARS:
            raise UploadRefused("a file must be uploaded through this page first")
        given = Path(value)
        if not given.is_absolute():
            raise UploadRefused("a file must be uploaded through this page first")
        real = Path(os.path.realpath(given))
        if real.parent.parent != self.folder:  # Gradio stores an upload as <folder>/<its hash>/<its name>
            raise UploadRefused("only files uploaded through this page can be added")
        known = self.known() if self.known is not None else None
        if known is not None and value not in known and str(real) not in known:
            raise UploadRefused("only files uploaded through this page can be added")
        try:
            info = os.lstat(given)  # the name itself, not what a symlink points at
        except OSError:
            raise UploadRefused("the uploaded file is gone: upload it again") from None
        if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1 or (
            hasattr(os, "geteuid") and info.st_uid != os.geteuid()
        ):
            raise UploadRefused("only files uploaded through this page can be added")
        return real

    def check_event(self, inputs: object) -> None:
        """Every file an event's raw inputs name (a dict with a ``path``, at any depth) must be an upload."""
        for value in _paths(inputs):
            self.check(value)

    def discard(self, path: Path) -> None:
        """Delete an upload once it was used or refused, and forget it (the folder only holds pending uploads)."""
        known = self.known() if self.known is not None else None
        if isinstance(known, set):
            known.discard(str(path))
        if Path(os.path.realpath(path)).parent.parent != self.folder:
            return  # never anything outside Gradio's upload folder
        try:
            path.unlink(missing_ok=True)
            path.parent.rmdir()  # Gradio keeps each upload in a folder of its own (named by its hash)
        except OSError:
            pass  # gone already, or another file of the same content is still there


def _paths(value: object, depth: int = 0) -> Iterator[object]:
    if depth > 32:
        return
    if isinstance(value, dict):
        if "path" in value:
            yield value["path"]
        for item in value.values():
            yield from _paths(item, depth + 1)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _paths(item, depth + 1)
