"""The ``sotrag`` command line: ``root`` builds the command group from ``ask``, ``serve``, ``router`` and
``sotrag.retrieval.cli``; ``common`` holds what they share. The top of the import graph: nothing else in
sotrag imports this package.
"""

from sotrag.app.cli.root import app, main

__all__ = ["app", "main"]
