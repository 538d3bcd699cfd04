"""OCI container images of a stack's layers: one image layer per venvstacks layer (`venvstacks image`)."""
