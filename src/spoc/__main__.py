"""`python -m spoc`: the same command as `spoc`, where no script is on the PATH."""

from spoc.cli import main

main()
