"""Deploying, verifying and running published layers: the API's module-level verbs.

They are named `deploy_published`, `verify_deployment` and `run_app` (not plain `deploy`)
because `venvstacks.deploy` is the subpackage that implements them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from venvstacks.api._run import emitting
from venvstacks.api.results import (
    DeployResult,
    Outcome,
    ProgressListener,
    VerifiedLayer,
    VerifyResult,
)

__all__ = ["deploy_published", "run_app", "verify_deployment"]


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
