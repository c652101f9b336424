"""``python -m recembed`` (and ``torchrun -m recembed fit ... --distributed``): the command line."""

from .cli.main import main

main()
