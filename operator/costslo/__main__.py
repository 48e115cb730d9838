"""`python -m costslo` runs the command-line interface."""

from costslo.cli import app

app()
