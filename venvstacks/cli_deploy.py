"""`venvstacks deploy`, `run` and `verify`."""

COMMANDS: list[object] = []
