"""The layer cache: lock results and built environments stored under digests of their inputs."""
