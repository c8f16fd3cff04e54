"""``python -m chaoskit`` is the ``chaoskit`` command."""

from .cli import main

main()
