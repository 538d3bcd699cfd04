"""`venvstacks lock`, `build`, `publish`, `local-export`, `status` and `dodo`."""

COMMANDS: list[object] = []
