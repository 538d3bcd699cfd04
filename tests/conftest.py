"""Shared pytest configuration: fixture plugins live in tests/fixtures_*.py, one per concern."""

pytest_plugins = [
    "fixtures_runtime",
    "fixtures_wheels",
    "fixtures_stacks",
    "fixtures_registry",
    "fixtures_cache",
    "fixtures_images",
]
