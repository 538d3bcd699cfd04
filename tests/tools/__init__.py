"""Helpers for tests: independent checks of graph renderings (see graph_checks.py)."""
