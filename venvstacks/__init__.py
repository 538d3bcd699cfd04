"""venvstacks: declarative, incremental builds of layered Python virtual environments.

The public API (`Stack`, option and result types, deploy verbs, the exception hierarchy) is
listed in `__all__` and imported lazily on first use, so `import venvstacks` stays cheap and
loads neither doit nor click. Everything not listed is private. See docs/api.md.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# A literal, not importlib.metadata: reading installed metadata costs ~45 ms on every start.
# hatchling reads the project version from here (pyproject's [tool.hatch.version]).
__version__ = "0.1.0"

if TYPE_CHECKING:
    from venvstacks.api import (
        BuildOptions,
        BuildResult,
        DeployResult,
        ExportOptions,
        LayerOutcome,
        LockOptions,
        Outcome,
        ProgressEvent,
        ProgressListener,
        PublishedLayer,
        PublishOptions,
        PublishResult,
        RemoteCache,
        Sources,
        Stack,
        StatusResult,
        TaskStatus,
        VerifiedLayer,
        VerifyResult,
        deploy_from_registry,
        deploy_published,
        run_app,
        verify_deployment,
    )
    from venvstacks.errors import (
        BuildError,
        DeployError,
        GraphError,
        LayerError,
        LockError,
        PublishError,
        RuntimeProvisionError,
        SpecError,
        StackError,
    )

__all__ = [
    # venvstacks.errors
    "BuildError",
    # venvstacks.api
    "BuildOptions",
    "BuildResult",
    "DeployError",
    "DeployResult",
    "ExportOptions",
    "GraphError",
    "LayerError",
    "LayerOutcome",
    "LockError",
    "LockOptions",
    "Outcome",
    "ProgressEvent",
    "ProgressListener",
    "PublishError",
    "PublishOptions",
    "PublishResult",
    "PublishedLayer",
    "RemoteCache",
    "RuntimeProvisionError",
    "Sources",
    "SpecError",
    "Stack",
    "StackError",
    "StatusResult",
    "TaskStatus",
    "VerifiedLayer",
    "VerifyResult",
    "__version__",
    "deploy_from_registry",
    "deploy_published",
    "run_app",
    "verify_deployment",
]

_ERRORS = frozenset(
    {
        "BuildError",
        "DeployError",
        "GraphError",
        "LayerError",
        "LockError",
        "PublishError",
        "RuntimeProvisionError",
        "SpecError",
        "StackError",
    }
)


def __getattr__(name: str) -> Any:
    if name not in __all__ or name == "__version__":
        raise AttributeError(f"module 'venvstacks' has no attribute {name!r}")
    module = "venvstacks.errors" if name in _ERRORS else "venvstacks.api"
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
