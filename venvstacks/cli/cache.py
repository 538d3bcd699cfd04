"""The ``venvstacks cache`` command group (list, info, prune) and the ``--no-layer-cache`` option."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import click

from venvstacks.cache.store import CacheEntry, CacheError, LayerCache

__all__ = ["cache", "layer_cache_for", "no_layer_cache_option", "parse_size"]

F = TypeVar("F", bound=Callable[..., Any])
_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


def no_layer_cache_option(func: F) -> F:
    decorator: Callable[[F], F] = click.option(
        "--no-layer-cache",
        is_flag=True,
        help="Neither restore from nor store into the layer cache "
        "(~/.cache/venvstacks, or $VENVSTACKS_CACHE_DIR).",
    )
    return decorator(func)


def layer_cache_for(no_layer_cache: bool) -> LayerCache | None:
    """The layer cache a build uses, or None with --no-layer-cache."""
    return None if no_layer_cache else LayerCache.from_environment()


def parse_size(text: str) -> int:
    """Bytes from `123`, `10K`, `1.5M`, `2G` (powers of 1024; a trailing `B` or `iB` is allowed)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?\s*", text, re.IGNORECASE)
    if not match:
        raise click.BadParameter(f"{text!r} is not a size (bytes, or a number with K, M or G)")
    return int(float(match.group(1)) * _UNITS[match.group(2).upper()])


def human_size(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"  # pragma: no cover - loop always returns


def _when(timestamp: float) -> str:
    if not timestamp:
        return "-"
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds")


def _entry_json(entry: CacheEntry, *, full: bool = False) -> dict[str, Any]:
    data: dict[str, Any] = {
        "digest": entry.digest,
        "kind": entry.kind,
        "layer": entry.layer,
        "size": entry.size,
        "files": int(entry.manifest.get("files", 0)),
        "created": entry.created,
        "last_used": _when(entry.last_used),
    }
    if full:
        data["path"] = str(entry.folder)
        data["inputs"] = entry.manifest.get("inputs", {})
        data["origin"] = entry.origin
    return data


json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON on stdout.")


@click.group("cache")
def cache() -> None:
    """Inspect and prune the layer cache (locks and environments stored by their input digest).

    The cache is in $VENVSTACKS_CACHE_DIR, else $XDG_CACHE_HOME/venvstacks, else
    ~/.cache/venvstacks. Builds restore a layer from it instead of running uv when the layer's
    inputs were built before; `build --no-layer-cache` bypasses it.
    """


@cache.command("list")
@json_option
def list_entries(as_json: bool) -> None:
    """List cache entries, least recently used first."""
    entries = LayerCache.from_environment().entries()
    if as_json:
        click.echo(json.dumps([_entry_json(e) for e in entries], indent=2))
        return
    if not entries:
        click.echo(f"the layer cache in {LayerCache.from_environment().root} is empty", err=True)
        return
    click.echo(f"{'DIGEST':<19}  {'KIND':<4}  {'LAYER':<24}  {'SIZE':>10}  LAST USED")
    for entry in entries:
        click.echo(
            f"{entry.digest[:19]:<19}  {entry.kind:<4}  {entry.layer:<24}  "
            f"{human_size(entry.size):>10}  {_when(entry.last_used)}"
        )


@cache.command("info")
@click.argument("digest", required=False)
@json_option
def info(digest: str | None, as_json: bool) -> None:
    """Where the cache is, how many entries and bytes it holds; or one entry (DIGEST prefix)."""
    store = LayerCache.from_environment()
    if digest is None:
        count, size = store.usage()
        if as_json:
            data = {"location": str(store.root), "entries": count, "size": size}
            click.echo(json.dumps(data, indent=2))
            return
        click.echo(f"location: {store.root}")
        click.echo(f"entries:  {count}")
        click.echo(f"size:     {human_size(size)} ({size} bytes)")
        return
    entry = store.find(digest)
    data = _entry_json(entry, full=True)
    if as_json:
        click.echo(json.dumps(data, indent=2, default=str))
        return
    for key in ("digest", "kind", "layer", "path", "created", "last_used", "files"):
        click.echo(f"{key + ':':<11}{data[key]}")
    click.echo(f"{'size:':<11}{human_size(entry.size)} ({entry.size} bytes)")
    click.echo("inputs:")
    inputs: dict[str, Any] = dict(entry.manifest.get("inputs", {}))
    for key, value in sorted(inputs.items()):
        click.echo(f"  {key}: {json.dumps(value, default=str)}")


@cache.command("prune")
@click.option(
    "--max-size",
    metavar="SIZE",
    default=None,
    help="Remove least recently used entries until at most SIZE remains "
    "(bytes, or with a K, M or G suffix; 0 empties the cache).",
)
@click.option(
    "--older-than",
    metavar="DAYS",
    type=click.FloatRange(min=0),
    default=None,
    help="Remove entries not used for DAYS days.",
)
@json_option
def prune(max_size: str | None, older_than: float | None, as_json: bool) -> None:
    """Remove cache entries, least recently used first. Safe while builds run."""
    if max_size is None and older_than is None:
        raise click.UsageError("give --max-size SIZE and/or --older-than DAYS")
    limit = parse_size(max_size) if max_size is not None else None
    store = LayerCache.from_environment()
    started = time.monotonic()
    try:
        result = store.prune(limit, older_than)
    except OSError as exc:
        raise CacheError(f"cannot prune the layer cache in {store.root}: {exc}") from None
    if as_json:
        data = {
            "location": str(store.root),
            "removed": [_entry_json(e) for e in result.removed],
            "freed": result.freed,
            "entries": result.kept,
            "size": result.remaining,
        }
        click.echo(json.dumps(data, indent=2))
        return
    click.echo(
        f"removed {len(result.removed)} entr{'y' if len(result.removed) == 1 else 'ies'} "
        f"({human_size(result.freed)}) in {time.monotonic() - started:.1f}s; "
        f"{result.kept} left ({human_size(result.remaining)}) in {store.root}"
    )
