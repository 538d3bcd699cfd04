"""Lock metadata (``pylock.<env>.meta.json``): its format, validity checks and renewal. Pure.

`LockMetadata` with `render_metadata` / `parse_metadata`; `lock_status` compares a stored lock
with the current input hashes; `next_metadata` decides ``locked_at`` and ``lock_version`` after a
(re)lock (see `venvstacks.lock.pylock` for the deliberate differences from 0.8.0).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

from venvstacks.lock.hashes import requirements_hash

__all__ = [
    "LockInputs",
    "LockMetadata",
    "LockStatus",
    "lock_status",
    "next_metadata",
    "parse_metadata",
    "render_metadata",
]


@dataclass(frozen=True)
class LockMetadata:
    """``pylock.<env>.meta.json``; the field names are the JSON keys."""

    lock_input_hash: str
    requirements_hash: str
    other_inputs_hash: str
    version_inputs_hash: str
    lock_version: int
    locked_at: str
    """ISO 8601 UTC, e.g. ``2025-08-27T00:00:00+00:00``."""


_METADATA_TYPES = {name: str for name in LockMetadata.__dataclass_fields__} | {"lock_version": int}
_METADATA_KEYS = sorted(_METADATA_TYPES)


def _has_type(value: object, kind: type) -> bool:
    return isinstance(value, kind) and not isinstance(value, bool)


def render_metadata(meta: LockMetadata) -> str:
    """The JSON text: indent 2, sorted keys, trailing newline."""
    return json.dumps(asdict(meta), indent=2, sort_keys=True) + "\n"


def parse_metadata(text: str) -> LockMetadata:
    """Read metadata JSON. Raises ValueError if it is malformed or from before 0.8.0."""
    data = json.loads(text)
    fields = data if isinstance(data, dict) else {}
    if "_legacy_requirements_hash" in fields:
        raise ValueError("lock metadata predates pylock.toml locks (relock needed)")
    wrong = [key for key, kind in _METADATA_TYPES.items() if not _has_type(fields.get(key), kind)]
    if wrong:
        raise ValueError(f"lock metadata lacks or mistypes {wrong} (expected {_METADATA_KEYS})")
    return LockMetadata(**{key: fields[key] for key in _METADATA_TYPES})


@dataclass(frozen=True)
class LockInputs:
    """The current input hashes a stored lock is checked against."""

    lock_input_hash: str
    other_inputs_hash: str
    version_inputs_hash: str


@dataclass(frozen=True)
class LockStatus:
    """Why a stored lock is (in)valid: the names of what changed, empty when valid.

    Names: ``metadata`` / ``pylock`` (file missing or unreadable), or a metadata field whose
    current value differs (``lock_input_hash``, ``requirements_hash``, ``other_inputs_hash``,
    ``version_inputs_hash``).
    """

    changed: tuple[str, ...]

    @property
    def valid(self) -> bool:
        return not self.changed

    @property
    def needs_full_lock(self) -> bool:
        """True if uv must re-resolve; False if at most the version must be bumped."""
        return any(name != "version_inputs_hash" for name in self.changed)


def _stored_hash_matches(lock_text: str, expected: str) -> bool:
    try:
        return requirements_hash(lock_text) == expected
    except ValueError:  # hand-edited into invalid TOML
        return False


def lock_status(
    inputs: LockInputs, metadata: LockMetadata | None, lock_text: str | None, *, versioned: bool
) -> LockStatus:
    """Compare the stored lock (None = missing or unreadable) with the current inputs.

    Version inputs count only for a versioned layer.
    """
    if metadata is None or lock_text is None:
        missing = (("metadata", metadata is None), ("pylock", lock_text is None))
        return LockStatus(tuple(name for name, absent in missing if absent))
    checks = (
        ("lock_input_hash", metadata.lock_input_hash == inputs.lock_input_hash),
        ("requirements_hash", _stored_hash_matches(lock_text, metadata.requirements_hash)),
        ("other_inputs_hash", metadata.other_inputs_hash == inputs.other_inputs_hash),
        (
            "version_inputs_hash",
            not versioned or metadata.version_inputs_hash == inputs.version_inputs_hash,
        ),
    )
    return LockStatus(tuple(name for name, ok in checks if not ok))


def _utc(moment: datetime) -> datetime:
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return aware.astimezone(UTC).replace(microsecond=0)


def next_metadata(
    previous: LockMetadata | None,
    lock_text: str,
    inputs: LockInputs,
    locked_at_candidate: datetime,
    versioned: bool,
    *,
    exclude_newer: datetime | None = None,
) -> LockMetadata:
    """The metadata to store after (re)locking to ``lock_text``.

    ``locked_at`` (the candidate, clamped to ``exclude_newer``) and ``lock_version`` (previous
    + 1 for a versioned layer; always 1 otherwise) are renewed only when the lock content
    changed, or a versioned layer's version inputs changed. Otherwise the previous values are
    kept, so an identical relock with unchanged inputs returns ``previous`` itself.
    """
    content_hash = requirements_hash(lock_text)
    renewed = previous is None or previous.requirements_hash != content_hash
    if previous is not None and versioned:
        renewed = renewed or previous.version_inputs_hash != inputs.version_inputs_hash
    if renewed or previous is None:
        moment = _utc(locked_at_candidate)
        if exclude_newer is not None:
            moment = min(moment, _utc(exclude_newer))
        locked_at = moment.isoformat()
        version = previous.lock_version + 1 if versioned and previous is not None else 1
    else:
        locked_at = previous.locked_at
        version = previous.lock_version if versioned else 1
    meta = LockMetadata(
        lock_input_hash=inputs.lock_input_hash,
        requirements_hash=content_hash,
        other_inputs_hash=inputs.other_inputs_hash,
        version_inputs_hash=inputs.version_inputs_hash,
        lock_version=version,
        locked_at=locked_at,
    )
    return previous if meta == previous else meta
