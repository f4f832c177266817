"""`python -m spoke`: the same command line as the `spoke` script."""

from spoke.cli import main

main()
