"""The remote layer cache: lock results and built environments shared through an OCI registry.

Each cache entry is one OCI artifact in the repository given to `build --remote-cache`, tagged
by its kind and input digest (`_vscache-v1-env-<64 hex>`; a tag starting with `_` is never a
layer's install-target tag, so the repository of `publish --to` may be used too). Its config
blob is the entry's manifest (every file's size, mode, time and sha256, the input document, the
paths it was built at), its one layer the entry's tree packed by `cache.packing`.

On a local miss, `fetch` GETs the tag; a 404 is a miss. A hit downloads the tree blob (verified
against its digest while it streams), unpacks it checking every file against the manifest, and
stores it in the local cache, from where the normal local restore takes it. `push` sends what
the registry lacks: nothing when the tag exists, else the blob (HEAD first, then a cross-repository
mount when another repository of the registry is known to hold it, then an upload), the config
and the tagged manifest.

A registry failure never fails the build: it is one warning line naming the registry, the
repository and the layer, and the layer is built locally (or, for a push, left unpushed). When
the registry is unreachable or refuses the credentials, the remote cache is off for the rest of
the build, so that one outage costs one warning and one round of retries, not one per layer.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from venvstacks.cache.digests import env_digest, lock_digest
from venvstacks.cache.manifest import ManifestEntry
from venvstacks.cache.packing import (
    TREE_MEDIA_TYPE,
    UNPACK_ERRORS,
    PackError,
    pack_tree,
    unpack_tree,
)
from venvstacks.cache.store import CacheEntry, LayerCache
from venvstacks.errors import StackError
from venvstacks.lock import resolve as locking
from venvstacks.oci.artifacts import ANNOTATION_PREFIX, canonical_json, manifest_document
from venvstacks.oci.client import MANIFEST_MEDIA_TYPE, Descriptor, RegistryClient
from venvstacks.oci.errors import (
    RegistryAuthError,
    RegistryError,
    RegistryNotFoundError,
    RegistryUnavailableError,
)
from venvstacks.oci.mounts import MountRecord
from venvstacks.oci.reference import Reference, parse_reference
from venvstacks.oci.transport import RETRIES_ENV, Response, TransportOptions
from venvstacks.plan.layers import LayerPlan, StackPlan
from venvstacks.plan.layout import BuildLayout

__all__ = [
    "ARTIFACT_TYPE",
    "ENTRY_MEDIA_TYPE",
    "PushProgress",
    "RemoteCache",
    "RemoteStats",
    "cache_tag",
    "remote_of",
    "share_build",
]

_log = logging.getLogger(__name__)
ARTIFACT_TYPE = "application/vnd.venvstacks.cache.v1+json"
ENTRY_MEDIA_TYPE = "application/vnd.venvstacks.cache.entry.v1+json"
TAG_PREFIX = "_vscache-v1-"
REMOTE_RETRIES = 2  # a cache must not stall a build: fewer retries than publish (unless set)
REMOTE_TIMEOUT = 20.0  # seconds without progress on a socket (publish: 60)
_FAILURES: tuple[type[BaseException], ...] = (
    StackError,
    ValueError,
    KeyError,
    TypeError,
    *UNPACK_ERRORS,
)


Report = Callable[[str, str, float | None], None]
"""Progress of one push: (``start``/``done``/``fail``, ``push-<kind>:<layer>``, seconds)."""

PushProgress = Callable[[Sequence[str]], AbstractContextManager[Report]]
"""Given the pushes about to run (``push-lock:<layer>``, ``push-env:<layer>``), a context
manager around them giving the callback that hears each one start and end."""


def push_name(kind: str, layer: str) -> str:
    """The progress name of pushing a cache entry: ``push-<kind>:<layer>``."""
    return f"push-{kind}:{layer}"


def _silent(event: str, name: str, seconds: float | None) -> None:
    pass


def cache_tag(kind: str, digest: str) -> str:
    """The tag of a cache entry: `_vscache-v1-<kind>-<hex>` (never an install-target tag)."""
    return f"{TAG_PREFIX}{kind}-{digest.removeprefix('sha256:')}"


@dataclass
class RemoteStats:
    """What the remote cache did during one build."""

    hits: list[str] = field(default_factory=list)  # "kind layer"
    misses: int = 0
    pushed: dict[str, list[str]] = field(default_factory=dict)  # outcome -> ["kind layer"]
    failures: int = 0
    pushes: list[dict[str, Any]] = field(default_factory=list)  # each push attempted, in order

    reference: str = ""
    read_only: bool = False
    off: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "reference": self.reference,
            "read_only": self.read_only,
            "restored": list(self.hits),
            "not_found": self.misses,
            "pushed": {k: list(v) for k, v in sorted(self.pushed.items())},
            "failures": self.failures,
            "off": self.off,
            "pushes": [dict(push) for push in self.pushes],
        }

    def summary(self) -> str:
        parts = [f"{len(self.hits)} restored", f"{self.misses} not found"]
        parts += [f"{len(v)} {k}" for k, v in sorted(self.pushed.items())]
        if self.failures:
            parts.append(f"{self.failures} failed")
        return ", ".join(parts)


def _descriptor(item: Any, media_type: str) -> Descriptor:
    if not isinstance(item, dict) or item.get("mediaType") != media_type:
        raise PackError(f"not a venvstacks cache artifact (expected a {media_type} blob)")
    return Descriptor(media_type, str(item["digest"]), int(item["size"]))


def artifact_parts(document: Mapping[str, Any]) -> tuple[Descriptor, Descriptor]:
    """(config, tree) descriptors of a cache artifact's manifest; PackError for anything else."""
    if document.get("artifactType") != ARTIFACT_TYPE:
        raise PackError(f"not a venvstacks cache artifact ({document.get('artifactType')!r})")
    layers = document.get("layers")
    if not isinstance(layers, list) or len(layers) != 1:
        raise PackError("a venvstacks cache artifact has exactly one layer")
    return _descriptor(document.get("config"), ENTRY_MEDIA_TYPE), _descriptor(
        layers[0], TREE_MEDIA_TYPE
    )


class RemoteCache:
    """One registry repository used as a layer cache by one build (thread-safe: one client
    per thread, since a client's connections are not shared)."""

    def __init__(
        self,
        reference: Reference,
        options: TransportOptions,
        *,
        read_only: bool = False,
        record: MountRecord | None = None,
    ) -> None:
        if options.retries is None and not os.environ.get(RETRIES_ENV):
            options = replace(options, retries=REMOTE_RETRIES)
        if options.timeout == TransportOptions.timeout:
            options = replace(options, timeout=REMOTE_TIMEOUT)
        self.reference = reference
        self.repository = reference.repository
        self.options = options
        self.registry = reference.registry(not options.plain_http)
        self.read_only = read_only
        self.record = record or MountRecord()
        self.stats = RemoteStats()
        self.off = False  # set after an outage or an auth failure
        self._guard = threading.Lock()
        self._local = threading.local()
        self._clients: list[RegistryClient] = []

    @classmethod
    def open(cls, url: str, options: TransportOptions, *, read_only: bool = False) -> RemoteCache:
        return cls(parse_reference(url, allow_tag=False), options, read_only=read_only)

    def __str__(self) -> str:
        return str(self.reference)

    def _client(self) -> RegistryClient:
        client: RegistryClient | None = getattr(self._local, "client", None)
        if client is None:
            client = RegistryClient(self.reference, self.options)
            self._local.client = client
            with self._guard:
                self._clients.append(client)
        return client

    def close(self) -> None:
        with self._guard:
            clients, self._clients = self._clients, []
        for client in clients:
            client.close()

    # -- failures -----------------------------------------------------------------------------

    def _failed(self, exc: BaseException, layer: str, consequence: str) -> None:
        """One warning line naming the registry, repository and layer; the build goes on."""
        if isinstance(exc, RegistryError):
            where = str(exc.about(repository=self.repository, layer=layer))
        else:
            detail = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
            where = (
                f"registry {self.registry}, repository {self.repository}, layer {layer}: {detail}"
            )
        fatal = isinstance(exc, RegistryUnavailableError | RegistryAuthError)
        with self._guard:
            self.stats.failures += 1
            if self.off:
                return  # already reported: this was in flight when the registry went away
            if fatal:
                self.off = True
                consequence += "; the remote cache is off for the rest of this build"
        _log.warning("warning: remote cache: %s; %s", where, consequence)

    # -- look-up ------------------------------------------------------------------------------

    def fetch(self, cache: LayerCache, kind: str, digest: str, layer: str) -> CacheEntry | None:
        """The entry for `digest` from the registry, stored into `cache`; None on a miss or a
        failure (warned about)."""
        if self.off:
            return None
        try:
            return self._fetch(cache, kind, digest, layer)
        except _FAILURES as exc:
            self._failed(exc, layer, "building it locally")
            return None

    def _fetch(self, cache: LayerCache, kind: str, digest: str, layer: str) -> CacheEntry | None:
        client = self._client()
        repo = self.repository
        try:
            document, _ = client.get_manifest(repo, cache_tag(kind, digest), layer=layer)
        except RegistryNotFoundError:
            with self._guard:
                self.stats.misses += 1
            return None
        config, tree = artifact_parts(document)
        manifest = json.loads(client.fetch_bytes(repo, config, layer=layer))
        if not isinstance(manifest, dict):
            raise PackError("the entry's manifest is not a JSON object")
        entries = [ManifestEntry.from_json(item) for item in manifest.get("entries", [])]

        def fill(folder: Path) -> Mapping[str, Any]:
            blob = folder / "tree.blob"
            client.fetch_blob(repo, tree, blob, layer=layer)
            unpack_tree(blob, entries, folder / "tree")
            blob.unlink()
            return manifest

        entry = cache.adopt(kind, digest, fill)
        self.record.add(client.registry, repo, [tree.digest])
        with self._guard:
            self.stats.hits.append(f"{kind} {layer}")
        _log.info("%s: %s restored from the remote cache %s", layer, kind, self.reference)
        return entry

    # -- push ---------------------------------------------------------------------------------

    def push(
        self, cache: LayerCache, kind: str, digest: str, layer: str, report: Report = _silent
    ) -> str | None:
        """Send the local entry for `digest` unless the registry has it: "present", "mounted",
        "uploaded"; None when there is nothing to push (or it failed: warned about). `report`
        hears the push start and end (`push_name`)."""
        if self.read_only or self.off:
            return None
        entry = cache.lookup(kind, digest)
        if entry is None:
            return None
        name = push_name(kind, layer)
        report("start", name, None)
        started = time.monotonic()
        sent: list[int] = [0]
        try:
            outcome = self._push(cache, entry, layer, sent)
        except _FAILURES as exc:
            self._failed(exc, layer, "not pushed (the build itself is not affected)")
            seconds = time.monotonic() - started
            self._record(name, kind, layer, "failed", sent[0], seconds)
            report("fail", name, seconds)
            return None
        with self._guard:
            self.stats.pushed.setdefault(outcome, []).append(f"{kind} {layer}")
        seconds = time.monotonic() - started
        self._record(name, kind, layer, outcome, sent[0], seconds)
        report("done", name, seconds)
        return outcome

    def _record(
        self, name: str, kind: str, layer: str, outcome: str, size: int, seconds: float
    ) -> None:
        push = {"task": name, "layer": layer, "kind": kind, "outcome": outcome}
        with self._guard:
            self.stats.pushes.append({**push, "bytes": size, "seconds": round(seconds, 3)})

    def _push(self, cache: LayerCache, entry: CacheEntry, layer: str, sent: list[int]) -> str:
        client = self._client()
        repo = self.repository
        tag = cache_tag(entry.kind, entry.digest)
        try:
            client.get_manifest(repo, tag, layer=layer)
            return "present"
        except RegistryNotFoundError:
            pass
        scratch = cache.base / "tmp"
        scratch.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="push-", dir=scratch) as tmp:
            blob = Path(tmp) / "tree.tar.zst"
            digest, size = pack_tree(entry.tree, entry.entries, blob)
            hints = self.record.candidates(client.registry, digest, repo)
            pushed = client.push_blob(repo, blob, digest, size, layer=layer, mount_from=hints)
        sent[0] = size
        config = client.push_bytes(
            repo, canonical_json(entry.manifest), ENTRY_MEDIA_TYPE, layer=layer
        )
        notes = {
            f"{ANNOTATION_PREFIX}.cache.kind": entry.kind,
            f"{ANNOTATION_PREFIX}.cache.layer": layer,
            f"{ANNOTATION_PREFIX}.cache.input-digest": entry.digest,
        }
        tree = Descriptor(TREE_MEDIA_TYPE, digest, size)
        document = manifest_document(ARTIFACT_TYPE, config, [tree], notes)
        client.put_manifest(repo, tag, document, MANIFEST_MEDIA_TYPE, layer=layer)
        self.record.add(client.registry, repo, [digest])
        _log.info(
            "%s: %s pushed to the remote cache %s (%s, %d bytes)",
            layer, entry.kind, self.reference, pushed, size,
        )  # fmt: skip
        return str(pushed)

    def existing_tags(self) -> set[str] | None:
        """The repository's cache tags, in one `GET .../tags/list` (following its pages);
        None when the registry cannot list them (each entry's tag is then looked up)."""
        transport = self._client().transport
        scope = [f"repository:{self.repository}:pull"]
        found: set[str] = set()
        url: str | None = f"/v2/{self.repository}/tags/list?n=1000"
        pages = 0
        try:
            while url is not None and pages < 1000:
                pages += 1
                page = url

                def get(page: str = page) -> Response:
                    return transport.request("GET", page, scopes=scope)

                response = transport.retrying("GET tags", get)
                if response.status == 404:
                    return found  # no repository yet: no tags
                if response.status != 200:
                    return None
                tags = json.loads(response.body).get("tags") or []
                found.update(t for t in tags if isinstance(t, str) and t.startswith(TAG_PREFIX))
                url = _next_link(response.header("Link"))
        except (RegistryError, ValueError, AttributeError, TypeError):
            return None
        return found

    def push_all(
        self,
        cache: LayerCache,
        wanted: Iterable[tuple[str, str, str]],
        progress: PushProgress | None = None,
    ) -> None:
        """Push every (kind, digest, layer) the registry lacks (known by one tag listing);
        `progress` is told the pushes to run (none: not called), then hears each one."""
        wanted = list(wanted)
        if not wanted or self.read_only or self.off:
            return
        present = self.existing_tags() or set()
        missing = []
        for kind, digest, layer in wanted:
            if cache_tag(kind, digest) not in present:
                if cache.has(kind, digest):
                    missing.append((kind, digest, layer))
            elif cache.has(kind, digest):
                with self._guard:
                    self.stats.pushed.setdefault("present", []).append(f"{kind} {layer}")
        if not missing:
            return
        names = [push_name(kind, layer) for kind, _, layer in missing]
        around = progress(names) if progress is not None else nullcontext(_silent)
        with around as report:
            for kind, digest, layer in missing:  # `push` does nothing once the cache is off
                self.push(cache, kind, digest, layer, report)


def _next_link(header: str | None) -> str | None:
    """The `rel="next"` target of a `Link` header (tag list pagination), if any."""
    for part in (header or "").split(","):
        target, _, params = part.partition(";")
        if 'rel="next"' in params.replace(" ", "") and target.strip().startswith("<"):
            return target.strip()[1:-1]
    return None


def remote_of(cache: object) -> RemoteCache | None:
    """The remote cache attached to a local layer cache, if any."""
    remote = getattr(cache, "remote", None)
    return remote if isinstance(remote, RemoteCache) else None


def share_build(
    cache: LayerCache | None,
    plan: StackPlan,
    layout: BuildLayout,
    options: locking.LockOptions,
    layers: Sequence[LayerPlan],
    progress: PushProgress | None = None,
) -> RemoteStats | None:
    """After a build: push the lock and environment entries of `layers` that the registry lacks
    (built now, restored, or built earlier), log what the remote cache did, close its clients.
    `progress` follows the pushes (see `RemoteCache.push_all`)."""
    remote = remote_of(cache)
    if cache is None or remote is None:
        return None
    try:
        wanted: list[tuple[str, str, str]] = []
        for layer in layers if not (remote.read_only or remote.off) else ():
            env = layer.env_name
            try:
                wanted.append(("lock", lock_digest(plan, layer, layout, options).digest, env))
                wanted.append(("env", env_digest(plan, env, layout).digest, env))
            except (StackError, OSError, ValueError, KeyError, TypeError) as exc:
                _log.info("%s: not pushed to the remote cache (%s)", env, exc)
        remote.push_all(cache, wanted, progress)
        stats = remote.stats
        stats.reference, stats.read_only, stats.off = str(remote), remote.read_only, remote.off
        _log.info("remote cache %s: %s", remote, stats.summary())
        return stats
    finally:
        remote.close()
