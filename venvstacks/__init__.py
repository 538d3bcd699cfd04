"""venvstacks: declarative, incremental builds of layered Python virtual environments."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("venvstacks")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = ["__version__"]
