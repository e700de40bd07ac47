"""Entry point for `python -m packager`."""

from packager.cli import main

main()
