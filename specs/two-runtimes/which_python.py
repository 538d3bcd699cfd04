"""Prints which Python and which `packaging` this application runs with."""

import sys

import packaging

print(f"Python {sys.version.split()[0]} with packaging {packaging.__version__}")
