"""The stack as doit tasks: task definitions, the doit engine, dodo files and status views."""
