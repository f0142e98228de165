"""`python -m cinderflow`."""

from cinderflow.cli import main

main()
