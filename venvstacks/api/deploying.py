"""Deploying (from a folder or a registry), verifying and running layers: the API's verbs.

They are named `deploy_published`, `deploy_from_registry`, `verify_deployment` and `run_app`
(not plain `deploy`) because `venvstacks.deploy` is the subpackage that implements them.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from venvstacks.api._run import emitting
from venvstacks.api.results import (
    DeployResult,
    Outcome,
    ProgressListener,
    VerifiedLayer,
    VerifyResult,
)

__all__ = ["deploy_from_registry", "deploy_published", "run_app", "verify_deployment"]


def deploy_published(
    artifacts_dir: Path | str,
    target_dir: Path | str,
    include: Sequence[str] = (),
    *,
    jobs: int = 1,
    progress: ProgressListener | None = None,
    repair: bool = False,
) -> DeployResult:
    """Deploy the layers published in `artifacts_dir` into `target_dir`, ready to run.

    `include` (layer names or install targets, fnmatch patterns) limits the deployment to those
    layers and the layers they need. Archives are checked against the published size and sha256;
    unchanged layers are left alone. `progress` hears `begin` with every step of every layer
    (`verify:<install target>`, then `extract:`, `compile:`, `postinstall:`), each step's
    `start`/`done`/`fail` (`skip` for a layer already deployed), then `end`; the engine's own
    `extract:`/`deploy:` task events come too. Raises `DeployError`.
    """
    from venvstacks.deploy import deployment

    target = Path(target_dir).absolute()
    chosen = deployment.select(Path(artifacts_dir), include)
    with emitting(progress, deployment.step_names(chosen)) as emit:
        layers, run = deployment.deploy(
            Path(artifacts_dir),
            target,
            include,
            jobs=jobs,
            progress=emit,
            repair=repair,
            layers=chosen,
        )
    ran = set(run.executed)
    outcomes = {
        layer.target: Outcome.RAN if f"deploy:{layer.target}" in ran else Outcome.UP_TO_DATE
        for layer in layers
    }
    return DeployResult(target, outcomes)


def deploy_from_registry(
    reference: str,
    target_dir: Path | str,
    include: Sequence[str] = (),
    *,
    jobs: int = 1,
    progress: ProgressListener | None = None,
    repair: bool = False,
    plain_http: bool = False,
    insecure: bool = False,
    ca_file: Path | str | None = None,
) -> DeployResult:
    """Deploy the stack pushed to `reference` (``oci://HOST[:PORT]/REPO[:TAG]``, tag default
    ``latest``; written by `publish --to`) into `target_dir`.

    Only the archives of the layers `target_dir` lacks (or whose files changed) are downloaded,
    each checked against its digest, into a scratch folder beside `target_dir` shaped like a
    publish output; that folder is then deployed exactly as `deploy_published` does (same
    arguments, same checks) and removed. `plain_http`, `insecure` and `ca_file` say how to reach
    the registry (as `publish --to`; credentials are found the same way). Raises `DeployError`, or
    another `StackError` naming the registry, repository and layer when the registry fails.
    """
    from venvstacks.deploy import deployment
    from venvstacks.deploy.published import select_published
    from venvstacks.errors import DeployError
    from venvstacks.oci.client import RegistryClient
    from venvstacks.oci.reference import parse_reference
    from venvstacks.oci.stack import fetch_published
    from venvstacks.oci.transport import TransportOptions

    if plain_http and (insecure or ca_file is not None):
        raise DeployError("plain HTTP cannot be combined with insecure HTTPS or a CA file")
    transport = TransportOptions(plain_http, insecure, Path(ca_file) if ca_file else None)
    source = parse_reference(reference)
    target = Path(target_dir).absolute()
    if target.exists() and not target.is_dir():
        raise DeployError(f"{target} is not a folder")
    target.parent.mkdir(parents=True, exist_ok=True)

    def needed(layers: Sequence[tuple[str, Mapping[str, Any]]]) -> list[Mapping[str, Any]]:
        # What to download; the deploy decides again under the target's lock.
        published = [deployment.PublishedLayer(category, meta) for category, meta in layers]
        return [
            layer.meta
            for layer in select_published(published, include, source=reference)
            if not deployment.is_current(target, layer.target, layer.sha256)
        ]

    with (
        RegistryClient(source, transport) as client,
        tempfile.TemporaryDirectory(prefix=".venvstacks-oci-", dir=target.parent) as scratch,
    ):
        fetch_published(client, source, Path(scratch), needed)
        return deploy_published(
            scratch, target, include, jobs=jobs, progress=progress, repair=repair
        )


def verify_deployment(target_dir: Path | str) -> VerifyResult:
    """Compare every deployed layer's files with what was published (nothing is changed)."""
    from venvstacks.deploy import deployment

    target = Path(target_dir).absolute()
    found = deployment.verify_deployment(target)
    return VerifyResult(
        target,
        tuple(
            VerifiedLayer(d.target, d.missing, d.changed, d.added, dict(d.details)) for d in found
        ),
    )


def run_app(target_dir: Path | str, app: str, args: Sequence[str] = ()) -> int:
    """Run a deployed application's launch module with `python -m`; returns its exit status.

    `app` is the layer name (`demo`), build name (`app-demo`) or install target (`app-demo@2`).
    """
    from venvstacks.deploy import deployment

    return deployment.run_app(Path(target_dir), app, args)
