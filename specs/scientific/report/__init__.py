"""A launch package: run with `python -m report`."""
