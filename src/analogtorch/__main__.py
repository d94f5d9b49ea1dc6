"""``python -m analogtorch``: the ``analogtorch`` command."""

from .cli import main

main()
