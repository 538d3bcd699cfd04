"""`python -m venvstacks`: run the command line interface."""

from venvstacks.cli.main import main

raise SystemExit(main())
