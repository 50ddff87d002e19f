"""`python -m mailcrm` runs the command line."""

from mailcrm.cli import main

main()
