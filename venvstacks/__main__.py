"""`python -m venvstacks`: run the command line interface."""

from venvstacks.cli import main

raise SystemExit(main())
