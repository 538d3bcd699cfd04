"""Registry options for `publish --to`, `build --publish --to`/`--remote-cache` and `deploy oci://`,
and the push report of `publish --to` (deploying from a registry is `api.deploying`'s)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, cast

import click

__all__ = [
    "PushRequest",
    "TransportFlags",
    "build_registry_options",
    "push_options",
    "push_output",
    "transport_options",
]

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class TransportFlags:
    """`--plain-http`, `--insecure`, `--ca-file` as given."""

    plain_http: bool = False
    insecure: bool = False
    ca_file: Path | None = None

    @property
    def given(self) -> bool:
        return self.plain_http or self.insecure or self.ca_file is not None

    def options(self) -> Any:
        from venvstacks.oci.transport import TransportOptions

        if self.plain_http and (self.insecure or self.ca_file):
            raise click.UsageError("--plain-http cannot be combined with --insecure or --ca-file")
        return TransportOptions(self.plain_http, self.insecure, self.ca_file)


@dataclass(frozen=True)
class PushRequest:
    """`--to`, `--tag`, `--mount-from` and the transport flags of a publishing command."""

    to: str
    tag: str
    mount_from: tuple[str, ...]
    transport: TransportFlags


_TRANSPORT_OPTIONS = [
    click.option(
        "--plain-http",
        is_flag=True,
        help="Talk plain HTTP to the registry (loopback or test registries).",
    ),
    click.option(
        "--insecure",
        is_flag=True,
        help="Use HTTPS without verifying the registry's certificate.",
    ),
    click.option(
        "--ca-file",
        metavar="FILE",
        type=click.Path(path_type=Path, dir_okay=False, exists=True),
        default=None,
        help="Trust the CA certificates in FILE (PEM) for the registry.",
    ),
]
_PUSH_OPTIONS = [
    click.option(
        "--to",
        "push_to",
        metavar="oci://HOST[:PORT]/REPO",
        default=None,
        help="Also push the published layers to this OCI registry repository.",
    ),
    click.option(
        "--tag",
        "push_tag",
        metavar="TAG",
        default="latest",
        show_default=True,
        help="With --to: the tag of the stack's image index.",
    ),
    click.option(
        "--mount-from",
        metavar="REPO",
        multiple=True,
        help="With --to: another repository of the same registry that may hold the "
        "archives (mounted instead of uploaded); repeatable.",
    ),
]


def _decorate(func: Callable[..., Any], options: Sequence[Callable[[Any], Any]]) -> Any:
    for option in reversed(options):
        func = option(func)
    return func


def _transport(kwargs: dict[str, Any]) -> TransportFlags:
    """Take the transport options' values out of a command's keyword arguments."""
    return TransportFlags(kwargs.pop("plain_http"), kwargs.pop("insecure"), kwargs.pop("ca_file"))


def transport_options(func: F) -> F:
    """Add the transport options, handed to the command as one `transport: TransportFlags`."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return func(*args, transport=_transport(kwargs), **kwargs)

    return cast(F, _decorate(wrapper, _TRANSPORT_OPTIONS))


def _option_value(option: str, check: Callable[[], object]) -> None:
    """Run ``check`` on an option's value; a malformed value is a usage error (exit 2)."""
    from venvstacks.errors import StackError

    try:
        check()
    except StackError as exc:
        raise click.BadParameter(str(exc), param_hint=f"'{option}'") from None


def _push_request(
    push_to: str | None,
    push_tag: str,
    mount_from: tuple[str, ...],
    transport: TransportFlags,
    transport_used: bool = False,
) -> PushRequest | None:
    if push_to is not None:
        from venvstacks.oci.reference import check_tag, parse_reference

        _option_value("--to", lambda: parse_reference(push_to, allow_tag=False))
        _option_value("--tag", lambda: check_tag(push_tag))
        transport.options()
        return PushRequest(push_to, push_tag, mount_from, transport)
    if mount_from or push_tag != "latest":
        raise click.UsageError("--tag and --mount-from need --to")
    if transport.given and not transport_used:
        raise click.UsageError("the transport options need --to")
    return None


def _registry_options(func: Callable[..., Any], remote_cache: bool) -> Any:
    """The push options (with `--remote-cache` and `--remote-cache-read-only` when
    `remote_cache`) and the transport options, defined once for both decorators below."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        transport = _transport(kwargs)
        push_to, push_tag = kwargs.pop("push_to"), kwargs.pop("push_tag")
        mount_from = kwargs.pop("mount_from")
        if remote_cache:
            cache = _remote_cache(
                kwargs.pop("remote_cache"), kwargs.pop("remote_cache_read_only"), transport
            )
            kwargs["remote_cache"] = cache
        used = remote_cache and kwargs["remote_cache"] is not None
        push = _push_request(push_to, push_tag, mount_from, transport, used)
        return func(*args, push=push, **kwargs)

    caching = _REMOTE_CACHE_OPTIONS if remote_cache else []
    return _decorate(wrapper, [*_PUSH_OPTIONS, *caching, *_TRANSPORT_OPTIONS])


def push_options(func: F) -> F:
    """Add `--to`, `--tag`, `--mount-from` and the transport options, handed to the command as
    one `push: PushRequest | None` (None without `--to`; the others need it)."""
    return cast(F, _registry_options(func, remote_cache=False))


_REMOTE_CACHE_OPTIONS = [
    click.option(
        "--remote-cache",
        metavar="oci://HOST[:PORT]/REPO",
        default=None,
        help="Use this OCI registry repository as a shared layer cache: layers missing from the "
        "local cache are restored from it, and the build's layers it lacks are pushed to it.",
    ),
    click.option(
        "--remote-cache-read-only",
        is_flag=True,
        help="With --remote-cache: only restore from the registry, never push to it.",
    ),
]


def _remote_cache(url: str | None, read_only: bool, transport: TransportFlags) -> Any:
    """`--remote-cache` and `--remote-cache-read-only` as the API's `RemoteCache` (or None)."""
    if url is None:
        if read_only:
            raise click.UsageError("--remote-cache-read-only needs --remote-cache")
        return None
    from venvstacks.api.options import RemoteCache
    from venvstacks.oci.reference import parse_reference

    _option_value("--remote-cache", lambda: parse_reference(url, allow_tag=False))
    transport.options()
    return RemoteCache(url, read_only, transport.plain_http, transport.insecure, transport.ca_file)


def build_registry_options(func: F) -> F:
    """`push_options` plus `--remote-cache` and `--remote-cache-read-only`: the command gets
    `push: PushRequest | None` and `remote_cache: RemoteCache | None` (the API's option); the
    transport options serve both."""
    return cast(F, _registry_options(func, remote_cache=True))


def push_output(
    output_dir: Path, push: PushRequest, say: Callable[[str], None] = click.echo
) -> None:
    """Push the publish output in `output_dir` as `push` asks, and report per layer."""
    from venvstacks.oci.client import RegistryClient
    from venvstacks.oci.reference import parse_reference
    from venvstacks.oci.stack import PushedLayer, push_published, read_published
    from venvstacks.plan.platforms import build_platform

    reference = parse_reference(push.to, allow_tag=False)
    platform = str(build_platform())
    stack = read_published(output_dir, platform)

    def show(layer: PushedLayer) -> None:
        say(f"  {layer.layer}: {layer.blob} ({layer.size} bytes) -> :{layer.tag}")

    say(f"Pushing {len(stack.layers)} layer(s) to {reference}")
    with RegistryClient(reference, push.transport.options()) as client:
        report = push_published(
            client, reference, stack, tag=push.tag, platform=platform,
            mount_from=push.mount_from, progress=show,
        )  # fmt: skip
    counts = {
        kind: sum(1 for l in report.layers if l.blob == kind)
        for kind in ("uploaded", "mounted", "present")
    }
    digest = report.index.digest if report.index else "?"
    say(
        f"Pushed {report.reference} ({digest}): {counts['uploaded']} uploaded "
        f"({report.uploaded_bytes} bytes), {counts['mounted']} mounted, "
        f"{counts['present']} already present"
    )
