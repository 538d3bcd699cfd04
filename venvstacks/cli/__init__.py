"""The `venvstacks` command line: one module per command group, and progress display."""
