"""`python -m edgeopt` is the same as the `edgeopt` command."""

from edgeopt.cli import main

main()
