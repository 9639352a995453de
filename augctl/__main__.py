"""`python -m augctl`."""

from .cli import main

main()
