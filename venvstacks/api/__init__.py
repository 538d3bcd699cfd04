"""The public Python API of venvstacks: `Stack`, its option and result types, and the deploy verbs.

The command line is one client of this package: each command parses its options, calls one
function here and renders the result. See docs/api.md.
"""

from venvstacks.api.deploying import (
    deploy_from_registry,
    deploy_published,
    run_app,
    verify_deployment,
)
from venvstacks.api.options import (
    BuildOptions,
    ExportOptions,
    LockOptions,
    PublishOptions,
    RemoteCache,
    Sources,
)
from venvstacks.api.results import (
    BuildResult,
    DeployResult,
    LayerOutcome,
    Outcome,
    ProgressEvent,
    ProgressListener,
    PublishedLayer,
    PublishResult,
    StatusResult,
    TaskStatus,
    VerifiedLayer,
    VerifyResult,
)
from venvstacks.api.stack import Stack

__all__ = [
    "BuildOptions",
    "BuildResult",
    "DeployResult",
    "ExportOptions",
    "LayerOutcome",
    "LockOptions",
    "Outcome",
    "ProgressEvent",
    "ProgressListener",
    "PublishOptions",
    "PublishResult",
    "PublishedLayer",
    "RemoteCache",
    "Sources",
    "Stack",
    "StatusResult",
    "TaskStatus",
    "VerifiedLayer",
    "VerifyResult",
    "deploy_from_registry",
    "deploy_published",
    "run_app",
    "verify_deployment",
]
