"""The demo application: shows which layer each of its imports comes from."""

import sys
from pathlib import Path

import numpy
import tabulate


def layer_of(module: object) -> str:
    """The layer folder a module was imported from (the folder above lib/)."""
    path = Path(getattr(module, "__file__", "") or "")
    for parent in path.parents:
        if parent.name == "lib":
            return parent.parent.name
    return "?"


def main() -> None:
    rows = [
        ("python", sys.version.split()[0], Path(sys.prefix).name),
        ("numpy", numpy.__version__, layer_of(numpy)),
        ("tabulate", tabulate.__version__, layer_of(tabulate)),
    ]
    print(tabulate.tabulate(rows, headers=["module", "version", "layer"]))
    total = numpy.arange(1, 101).sum()
    print(f"numpy says 1 + 2 + ... + 100 = {total}")


if __name__ == "__main__":
    main()
