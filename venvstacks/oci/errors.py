"""Registry failures as one-line `StackError`s naming the registry, the repository and the layer."""

from __future__ import annotations

from venvstacks.errors import StackError

__all__ = [
    "DigestMismatchError",
    "RegistryAuthError",
    "RegistryError",
    "RegistryNotFoundError",
    "RegistryUnavailableError",
]


class RegistryError(RuntimeError, StackError):
    """A registry operation failed. The message names `host:port`, the repository and the layer."""

    def __init__(
        self,
        registry: str,
        message: str,
        *,
        repository: str | None = None,
        layer: str | None = None,
    ) -> None:
        self.registry = registry
        self.repository = repository
        self.layer = layer
        self.detail = message
        where = f"registry {registry}"
        if repository:
            where += f", repository {repository}"
        if layer:
            where += f", layer {layer}"
        super().__init__(f"{where}: {message}")

    def about(self, *, repository: str | None = None, layer: str | None = None) -> RegistryError:
        """The same failure, attributed to a repository or layer the raiser did not know."""
        return type(self)(
            self.registry,
            self.detail,
            repository=self.repository or repository,
            layer=self.layer or layer,
        )


class RegistryUnavailableError(RegistryError):
    """The registry could not be reached, or kept failing after the retries (5xx, 429, resets)."""


class RegistryAuthError(RegistryError):
    """The registry refused the credentials, or needs credentials that were not given (401/403)."""


class RegistryNotFoundError(RegistryError):
    """The repository, tag, manifest or blob does not exist (404)."""


class DigestMismatchError(RegistryError):
    """Downloaded content does not match the digest (or size) it was asked for by."""
