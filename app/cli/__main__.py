"""``python -m sotrag.app.cli``: the same command line as the ``sotrag`` script."""

from sotrag.app.cli.root import main

main()
