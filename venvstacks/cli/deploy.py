"""`venvstacks deploy`, `run` and `verify`: call the API's deploy verbs on what `publish` produced."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from venvstacks.api.deploying import (
    deploy_from_registry,
    deploy_published,
    run_app,
    verify_deployment,
)
from venvstacks.cli.common import jobs_option
from venvstacks.cli.output import Output, subscriber
from venvstacks.cli.registry import TransportFlags, transport_options
from venvstacks.errors import StackError

__all__ = ["COMMANDS"]


@click.command()
@click.argument("artifacts_dir", metavar="ARTIFACTS_DIR|oci://HOST[:PORT]/REPO[:TAG]")
@click.argument(
    "target_dir", metavar="TARGET_DIR", type=click.Path(path_type=Path, file_okay=False)
)
@click.option(
    "--include",
    metavar="APP",
    multiple=True,
    help="Only these layers (layer names or install targets, fnmatch patterns) and the layers they need; repeatable.",
)
@jobs_option("Deploy up to N independent layers at once.")
@click.option(
    "--json", "as_json", is_flag=True, help="Print what was deployed, per layer, as JSON."
)
@click.option(
    "--repair",
    is_flag=True,
    help="Also restore, from their archives, the deployed layers whose files `verify` flags.",
)
@transport_options
@click.pass_context
def deploy(
    ctx: click.Context,
    artifacts_dir: str,
    target_dir: Path,
    include: tuple[str, ...],
    jobs: int,
    as_json: bool,
    repair: bool,
    transport: TransportFlags,
) -> None:
    """Deploy published layers from ARTIFACTS_DIR into TARGET_DIR, ready to run.

    Each archive's size and sha256 are checked against the published metadata, it is extracted
    safely (nothing may land outside TARGET_DIR), and the layers are post-installed runtime
    first. Re-deploying unchanged layers does nothing; an updated layer replaces only itself.

    ARTIFACTS_DIR may be a registry reference, oci://HOST[:PORT]/REPO[:TAG] (tag default
    latest), written by `publish --to`: only the archives TARGET_DIR lacks are downloaded, each
    verified against its digest, then deployed exactly as from a folder.
    """
    if artifacts_dir.startswith("oci://"):
        transport.options()  # a usage error (exit 2) for flags that cannot go together
        result = deploy_from_registry(
            artifacts_dir, target_dir, include, jobs=jobs, progress=subscriber(ctx),
            repair=repair, plain_http=transport.plain_http, insecure=transport.insecure,
            ca_file=transport.ca_file,
        )  # fmt: skip
    elif transport.given:
        raise click.UsageError("--plain-http, --insecure and --ca-file need an oci:// source")
    else:
        result = deploy_published(
            artifacts_dir, target_dir, include, jobs=jobs, progress=subscriber(ctx), repair=repair
        )
    out = Output(as_json=as_json)
    if as_json:
        out.document(result.to_json())
    changed = len(result.updated)
    out.say(
        f"Deployed {len(result.layers)} layer(s) into {result.target_dir} "
        f"({changed} updated, {len(result.layers) - changed} unchanged)"
    )


@click.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.argument(
    "target_dir", metavar="TARGET_DIR", type=click.Path(path_type=Path, file_okay=False)
)
@click.argument("app", metavar="APP")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def run(target_dir: Path, app: str, args: tuple[str, ...]) -> None:
    """Run a deployed application: its launch module with `python -m`, passing ARGS through.

    APP is the application's layer name (`demo` or `app-demo`) or its install target.
    """
    code = run_app(target_dir, app, args)
    sys.exit(code)


@click.command()
@click.argument(
    "target_dir", metavar="TARGET_DIR", type=click.Path(path_type=Path, file_okay=False)
)
@click.option("--json", "as_json", is_flag=True, help="Print each layer's differences as JSON.")
def verify(target_dir: Path, as_json: bool) -> None:
    """Check that deployed layers still hold exactly the files that were published.

    Files written by post-install (pyvenv.cfg, sitecustomize.py) and bytecode caches are ignored.
    Exits 1 and lists the differences when any layer changed.
    """
    result = verify_deployment(target_dir)
    out = Output(as_json=as_json)
    if as_json:
        out.document(result.to_json())
    bad = [r for r in result.layers if not r.clean]
    for r in result.layers if not as_json else ():
        out.say(f"{r.target}: {'ok' if r.clean else 'DIFFERS'}")
        for label, paths in (("missing", r.missing), ("changed", r.changed), ("added", r.added)):
            for path in paths[:20]:
                why = r.details.get(path)
                out.say(f"  {label}: {path}" + (f" ({why})" if why else ""))
            if len(paths) > 20:
                out.say(f"  ... and {len(paths) - 20} more {label}")
    if bad:
        raise StackError(
            f"{len(bad)} deployed layer(s) differ from what was published: {', '.join(r.target for r in bad)}"
        )


COMMANDS = [deploy, run, verify]
