"""`python -m augctl`."""

from .cli import run

run()
