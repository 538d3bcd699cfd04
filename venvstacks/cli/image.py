"""`venvstacks image`: an OCI image per application, one image layer per venvstacks layer."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

import click

from venvstacks.api.results import PublishedLayer
from venvstacks.api.stack import Stack
from venvstacks.cli.build import lock_options, sources_from
from venvstacks.cli.common import build_dir_option, load_stack, spec_argument
from venvstacks.cli.output import Output, shown_and_done, subscriber
from venvstacks.errors import SelectionError, StackError
from venvstacks.plan.layers import LayerPlan
from venvstacks.plan.names import LayerKind, UnmatchedNames
from venvstacks.plan.platforms import build_platform

__all__ = ["COMMANDS"]

_log = logging.getLogger("venvstacks")


def _find_apps(stack: Stack, app: str | None, all_apps: bool) -> list[LayerPlan]:
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
        others = [l for l in stack.plan.enabled if app in (l.name, l.env_name) and l not in apps]
        problem = UnmatchedNames(
            option="APP",
            unmatched=(app,),
            known=tuple(l.name for l in apps),
            also_known=tuple(l.env_name for l in apps),
            source=str(stack.spec.path),
            noun="application",
            notes=tuple(f"{app!r} is a {l.kind} layer, not an application" for l in others[:1]),
        )
        raise SelectionError(problem.message(), problem.details())
    if not matches[0].targets(build_platform()):
        raise StackError(f"application {app!r} is not built for {build_platform()}")
    return matches


def _publish(
    ctx: click.Context,
    stack: Any,
    apps: list[LayerPlan],
    options: dict[str, Any],
) -> dict[str, PublishedLayer]:
    """Bring the layers up to date and published (like `build --publish`); each layer's archive.

    Without --output-dir, the archives only carry the layers into the image: they are kept in
    the build dir, in the fastest format (multi-threaded zstd), apart from what `publish` writes.
    """
    from venvstacks.api.options import BuildOptions, PublishOptions

    output_dir = options["output_dir"]
    request = PublishOptions(
        include=tuple(a.env_name for a in apps),
        with_dependencies=True,
        output_dir=output_dir or stack.layout.state_dir / "images" / "published",
        fmt=None if output_dir else "tar.zst",
        jobs=options["jobs"],
    )
    build = BuildOptions(
        include=tuple(a.env_name for a in apps),
        sources=sources_from(
            options["use_index"],
            options["local_wheels"],
            options["runtime_archives"],
            options["runtime_fallback"],
            layer_cache=not options.get("no_layer_cache", False),
        ),
        reset=options["reset_lock"],
        lock_if_needed=options["lock_if_needed"],
        publish=request,
        jobs=options["jobs"],
    )
    result = stack.build(build, progress=subscriber(ctx))
    Output(report=options.get("report")).report(result.to_json())
    return dict(result.published.layers) if result.published is not None else {}


def _image_request(
    stack: Stack,
    published: dict[str, PublishedLayer],
    app: LayerPlan,
    prefix: str,
    layer_format: str,
) -> Any:
    from venvstacks.image.assemble import ImageLayer, ImageRequest

    order = [app.runtime, *reversed(app.frameworks), app.env_name]
    layers = []
    meta: Mapping[str, Any] = {}
    for env in order:
        found = published.get(str(env))
        if found is None:
            raise StackError(f"layer {env}: it was not published for this image")
        meta = found.metadata
        try:
            layers.append(
                ImageLayer(
                    env=env,
                    kind=stack.plan[env].kind.category,
                    target=str(meta["install_target"]),
                    archive=found.artefact,
                    archive_sha256=str(meta["archive_hashes"]["sha256"]),
                    lock_version=int(meta["lock_version"]),
                    locked_at=str(meta["locked_at"]),
                    build_env=stack.layout.env_dir(env),
                )
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise StackError(
                f"layer {env}: no usable published metadata {found.metadata_path} ({exc})"
            ) from None
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
    help="The platform of the image (default: this machine's, e.g. linux/amd64). Given once, "
    "the image is also tagged TAG-OS-ARCH; given several times, an image index over the images "
    "at TAG-OS-ARCH is written under TAG (this machine's platform is built first).",
)
@click.option("--plain-http", is_flag=True, help="Talk HTTP, not HTTPS, to oci:// registries.")
@click.option("--insecure", is_flag=True, help="Do not verify the registries' TLS certificates.")
@click.option(
    "--ca-file",
    metavar="FILE",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    default=None,
    help="Trust the registries' certificates issued by this CA (PEM).",
)
@click.option(
    "--output-dir",
    metavar="DIR",
    default=None,
    help="Also publish the layer archives here, as `publish` does (default: only in the build "
    "dir, as tar.zst).",
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
    plain_http: bool,
    insecure: bool,
    ca_file: Path | None,
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
    from venvstacks.image.base import load_base, read_rootfs
    from venvstacks.image.platforms import host_platform, parse_platform, platform_tag, write_index
    from venvstacks.image.refs import parse_image_ref

    try:  # malformed option values are usage errors (exit 2), like click's own checks
        prefix = _check_prefix(prefix)
        base_ref = parse_image_ref(base_text, "--base")
        dest_ref = parse_image_ref(dest_text, "--to")
        wanted = list(dict.fromkeys(parse_platform(p) for p in platforms))
    except StackError as exc:
        raise click.UsageError(str(exc)) from None
    host = host_platform(str(build_platform()))
    if len(wanted) == 1 and wanted[0] != host:
        raise StackError(
            f"this machine builds {host} images; build the {wanted[0]} image on a {wanted[0]} "
            "machine (or list several --platform values to write an index over built ones)"
        )
    stack = load_stack(spec_path, build_dir)
    apps = _find_apps(stack, app, all_apps)
    from venvstacks.api.options import BuildOptions

    shown = BuildOptions(include=tuple(a.env_name for a in apps))
    if shown_and_done(
        Output(as_json=as_json),
        stack,
        shown,
        show_first=show_first,
        show_only=show_only,
        as_json=as_json,
    ):
        return
    builds_here = not wanted or host in wanted
    # With --show --json or --report -, stdout holds only that JSON document: lines go to stderr.
    quiet_stdout = as_json or options.get("report") == "-"
    store = LayerStore(stack.layout.state_dir / "images")
    transport = _transport(plain_http, insecure, ca_file)
    sink = _sink(dest_ref, transport)
    if builds_here:
        published = _publish(ctx, stack, apps, options)
        base = load_base(base_ref, host, store=store.layout, transport=transport)
        base_fs = read_rootfs(base)
    for chosen in apps:
        image_tag = _tag_for(chosen, tag, dest_ref.tag, all_apps)
        if builds_here:
            request = _image_request(stack, published, chosen, prefix, layer_format)
            tags = [image_tag] if not wanted else [platform_tag(image_tag, host)]
            if len(wanted) == 1:
                tags.insert(0, image_tag)
            if hasattr(sink, "count"):
                sink.count = type(sink.count)()  # counted per image
            built = build_image(base, request, store, sink, tags, base_fs=base_fs)
            for warning in built.warnings:
                _log.warning("warning: %s", warning)
            moved = _moved(getattr(sink, "count", None))
            click.echo(
                err=quiet_stdout,
                message=f"{dest_ref.with_tag(tags[-1])} {built.manifest.digest} "
                f"({len(built.layers)} layers, {len(request.layers)} from the stack, "
                f"{len(built.rebuilt)} rebuilt{moved})",
            )
        if len(wanted) > 1:
            index, _ = write_index(sink, str(dest_ref), image_tag, wanted)
            click.echo(
                err=quiet_stdout,
                message=f"{dest_ref.with_tag(image_tag)} {index.digest} (index: {', '.join(wanted)})",
            )


def _transport(plain_http: bool, insecure: bool, ca_file: Path | None) -> Any:
    """Registry transport options (None when no registry client is needed)."""
    import importlib

    try:
        transport = importlib.import_module("venvstacks.oci.transport")
    except ImportError:
        return None
    return transport.TransportOptions(plain_http=plain_http, insecure=insecure, ca_file=ca_file)


def _sink(ref: Any, transport: Any) -> Any:
    from venvstacks.image.base import LayoutSink, registry_module

    if ref.kind == "oci-layout":
        return LayoutSink(ref)
    registry = registry_module()
    return registry.RegistrySink(registry.connect(ref, transport), ref)


def _moved(count: Any) -> str:
    """What a registry push moved, for the line printed per image ('' for a layout)."""
    if count is None:
        return ""
    return (
        f", {count.uploaded_bytes} bytes uploaded ({count.uploaded} blobs uploaded, "
        f"{count.mounted} mounted, {count.present} already there)"
    )


def _tag_for(app: LayerPlan, tag: str | None, dest_tag: str | None, all_apps: bool) -> str:
    if all_apps:
        suffix = tag or dest_tag
        return f"{app.name}-{suffix}" if suffix else str(app.name)
    return tag or dest_tag or "latest"


COMMANDS = [image]
