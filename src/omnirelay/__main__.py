"""``python -m omnirelay`` is the ``omnirelay`` command."""

from omnirelay.cli import main

main()
