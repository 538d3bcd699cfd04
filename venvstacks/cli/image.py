"""`venvstacks image`: an OCI image per application, one image layer per venvstacks layer."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import Any

import click

from venvstacks.cli.build import (
    _lock_options,
    _runtime_options,
    _stale_locks,
    lock_options,
    run_stack_tasks,
    shown_and_done,
)
from venvstacks.cli.common import LoadedStack, build_dir_option, load_stack, spec_argument
from venvstacks.errors import StackError
from venvstacks.plan.layers import LayerPlan
from venvstacks.plan.names import LayerKind
from venvstacks.plan.platforms import build_platform

__all__ = ["COMMANDS"]

_log = logging.getLogger("venvstacks")


def _find_apps(stack: LoadedStack, app: str | None, all_apps: bool) -> list[LayerPlan]:
    apps = [l for l in stack.plan.enabled if l.kind is LayerKind.APPLICATION]
    if all_apps:
        if app is not None:
            raise click.UsageError("give either APP or --all-apps, not both")
        chosen = [l for l in apps if l.targets(build_platform())]
        if not chosen:
            raise StackError(f"{stack.spec.path}: no application layers for {build_platform()}")
        return chosen
    if app is None:
        raise click.UsageError("missing APP (an application layer) or --all-apps")
    matches = [l for l in apps if app in (l.name, l.env_name)]
    if not matches:
        known = ", ".join(l.name for l in apps) or "none"
        raise StackError(f"{stack.spec.path}: no application layer {app!r} (applications: {known})")
    if not matches[0].targets(build_platform()):
        raise StackError(f"application {app!r} is not built for {build_platform()}")
    return matches


def _needed(stack: LoadedStack, apps: Sequence[LayerPlan]) -> list[LayerPlan]:
    wanted: dict[str, None] = {}
    for app in apps:
        for env in (*app.dependencies, app.env_name):
            wanted[env] = None
    return [l for l in stack.plan.layers if l.env_name in wanted]


def _publish(
    ctx: click.Context,
    stack: LoadedStack,
    layers: list[LayerPlan],
    options: dict[str, Any],
) -> Any:
    """Bring the layers up to date and published (like `build --publish`); the publish options."""
    from venvstacks.cli.publish import publish_options_from
    from venvstacks.tasks.stack import StackTasks

    lock = _lock_options(
        stack, options["use_index"], options["local_wheels"], options["reset_lock"], False
    )
    stale = _stale_locks(stack, layers)
    if stale and not (options["lock_if_needed"] or lock.reset):
        raise StackError(
            f"layers without a valid lock: {', '.join(stale)} "
            "(run `venvstacks lock`, or pass --lock-if-needed)"
        )
    publishing = publish_options_from(stack, options["output_dir"], None, False, False, False)
    tasks = StackTasks(
        stack.plan,
        stack.layout,
        lock_options=lock,
        runtime_options=_runtime_options(
            stack, options["runtime_archives"], options["runtime_fallback"]
        ),
        publishing=publishing,
    )
    run_stack_tasks(stack, tasks, tasks.names("archive", layers), options["jobs"], ctx)
    return publishing


def _image_request(
    stack: LoadedStack, publishing: Any, app: LayerPlan, prefix: str, layer_format: str
) -> Any:
    import json

    from venvstacks.image.assemble import ImageLayer, ImageRequest

    order = [app.runtime, *reversed(app.frameworks), app.env_name]
    layers = []
    meta: dict[str, Any] = {}
    for env in order:
        path = publishing.metadata_path(env)
        try:
            meta = json.loads(path.read_text(encoding="utf-8"))
            layers.append(
                ImageLayer(
                    env=env,
                    kind=stack.plan[env].kind.category,
                    target=str(meta["install_target"]),
                    archive=publishing.output_dir / str(meta["archive_name"]),
                    archive_sha256=str(meta["archive_hashes"]["sha256"]),
                    lock_version=int(meta["lock_version"]),
                    locked_at=str(meta["locked_at"]),
                    build_env=stack.layout.env_dir(env),
                )
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise StackError(f"layer {env}: no usable published metadata {path} ({exc})") from None
    return ImageRequest(
        app=app.name,
        launch_module=str(meta["app_launch_module"]),
        layers=tuple(layers),
        prefix=PurePosixPath(prefix),
        layer_format=layer_format,
    )


def _check_prefix(prefix: str) -> str:
    path = PurePosixPath(prefix)
    if not path.is_absolute() or ".." in path.parts or str(path) == "/":
        raise click.BadParameter(
            f"{prefix!r}: an absolute folder below / is needed", param_hint="--prefix"
        )
    return str(path)


@click.command()
@spec_argument
@click.argument("app", required=False)
@click.option(
    "--base",
    "base_text",
    required=True,
    metavar="BASE",
    help="The base image: oci-layout:DIR[:TAG] or oci://HOST[:PORT]/REPO[:TAG].",
)
@click.option(
    "--to",
    "dest_text",
    required=True,
    metavar="DEST",
    help="Where the image goes: oci-layout:DIR[:TAG] or oci://HOST[:PORT]/REPO[:TAG].",
)
@click.option(
    "--tag",
    default=None,
    help="The image tag (default: DEST's tag, else 'latest'; "
    "with --all-apps each app's name, or APP-TAG).",
)
@click.option(
    "--prefix",
    default="/opt/venvstacks",
    show_default=True,
    help="Where the layers are deployed in the image.",
)
@click.option(
    "--layer-format",
    type=click.Choice(["gzip", "zstd"]),
    default="gzip",
    show_default=True,
    help="Compression of the venvstacks layers.",
)
@click.option("--all-apps", is_flag=True, help="One image per application layer, tagged by app.")
@click.option(
    "--platform",
    "platforms",
    multiple=True,
    metavar="OS/ARCH",
    help="The base's platform to use (default linux/amd64).",
)
@click.option(
    "--output-dir",
    metavar="DIR",
    default=None,
    help="Where layer archives are published first (default: _artifacts beside the spec).",
)
@click.option(
    "--lock-if-needed/--no-lock-if-needed",
    default=False,
    help="Lock layers whose lock is missing or out of date, instead of failing.",
)
@build_dir_option
@lock_options
@click.pass_context
def image(
    ctx: click.Context,
    /,
    spec_path: Path,
    app: str | None,
    base_text: str,
    dest_text: str,
    tag: str | None,
    prefix: str,
    layer_format: str,
    all_apps: bool,
    platforms: tuple[str, ...],
    build_dir: str | None,
    show_first: bool,
    show_only: bool,
    as_json: bool,
    **options: Any,
) -> None:
    """Build OCI images of application layers: the base's layers, then one layer per
    venvstacks layer (runtime, frameworks, app) deployed under --prefix.

    Layers are built and published first when needed. Images of apps that share a runtime and
    frameworks share those layers byte for byte, so a registry stores them and a node pulls
    them once.
    """
    from venvstacks.image.assemble import LayerStore, build_image
    from venvstacks.image.base import LayoutSink, load_base
    from venvstacks.image.refs import parse_image_ref

    prefix = _check_prefix(prefix)
    base_ref = parse_image_ref(base_text, "--base")
    dest_ref = parse_image_ref(dest_text, "--to")
    if len(platforms) > 1:
        raise click.UsageError("several --platform values need the registry support (oci://)")
    stack = load_stack(spec_path, build_dir)
    apps = _find_apps(stack, app, all_apps)
    layers = _needed(stack, apps)
    if shown_and_done(
        stack,
        layers,
        ["build", "publish", "image"],
        show_first=show_first,
        show_only=show_only,
        as_json=as_json,
    ):
        return
    publishing = _publish(ctx, stack, layers, options)
    base = load_base(base_ref, platforms[0] if platforms else None)
    if dest_ref.kind != "oci-layout":
        raise StackError("--to oci://... is not supported yet (use oci-layout:DIR)")
    sink = LayoutSink(dest_ref)
    store = LayerStore(stack.layout.state_dir / "images")
    for chosen in apps:
        request = _image_request(stack, publishing, chosen, prefix, layer_format)
        image_tag = _tag_for(chosen, tag, dest_ref.tag, all_apps)
        built = build_image(base, request, store, sink, image_tag)
        for warning in built.warnings:
            _log.warning("warning: %s", warning)
        click.echo(
            f"{dest_ref.with_tag(image_tag)} {built.manifest.digest} "
            f"({len(built.layers)} layers, {len(request.layers)} from the stack, "
            f"{len(built.rebuilt)} rebuilt)"
        )


def _tag_for(app: LayerPlan, tag: str | None, dest_tag: str | None, all_apps: bool) -> str:
    if all_apps:
        suffix = tag or dest_tag
        return f"{app.name}-{suffix}" if suffix else str(app.name)
    return tag or dest_tag or "latest"


COMMANDS = [image]
