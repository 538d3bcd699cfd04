"""venvstacks: declarative, incremental builds of layered Python virtual environments."""

# A literal, not importlib.metadata: reading installed metadata costs ~45 ms on every start.
# hatchling reads the project version from here (pyproject's [tool.hatch.version]).
__version__ = "0.1.0"

__all__ = ["__version__"]
