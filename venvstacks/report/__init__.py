"""Reports about a stack: the `show` tree and graph renderers. Pure."""
