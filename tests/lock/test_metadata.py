"""Tests for venvstacks.lock.metadata: the lock metadata format, validity and renewal."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from fixtures_pylock import TINY

from venvstacks.lock.hashes import requirements_hash
from venvstacks.lock.metadata import (
    LockInputs,
    LockMetadata,
    lock_status,
    next_metadata,
    parse_metadata,
    render_metadata,
)

# --- metadata ----------------------------------------------------------------------------------

META = LockMetadata(
    lock_input_hash="sha256:11",
    requirements_hash=requirements_hash(TINY),
    other_inputs_hash="sha256:33",
    version_inputs_hash="sha256:44",
    lock_version=3,
    locked_at="2025-08-27T00:00:00+00:00",
)
INPUTS = LockInputs("sha256:11", "sha256:33", "sha256:44")
T0 = datetime(2025, 9, 1, 12, 30, 15, 123456, tzinfo=UTC)


def test_render_metadata() -> None:
    assert render_metadata(META) == (
        "{\n"
        '  "lock_input_hash": "sha256:11",\n'
        f'  "lock_version": 3,\n'
        '  "locked_at": "2025-08-27T00:00:00+00:00",\n'
        '  "other_inputs_hash": "sha256:33",\n'
        f'  "requirements_hash": "{META.requirements_hash}",\n'
        '  "version_inputs_hash": "sha256:44"\n'
        "}\n"
    )
    assert parse_metadata(render_metadata(META)) == META


def test_parse_metadata_ignores_unknown_keys() -> None:
    data = json.loads(render_metadata(META)) | {"comment": "x"}
    assert parse_metadata(json.dumps(data)) == META


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"lock_version": "3"}, "lock_version"),
        ({"lock_version": True}, "lock_version"),
        ({"locked_at": None}, "locked_at"),
        ({"_legacy_requirements_hash": "sha256:00"}, "predates"),
    ],
)
def test_parse_metadata_errors(change: dict[str, Any], message: str) -> None:
    data = json.loads(render_metadata(META)) | change
    with pytest.raises(ValueError, match=message):
        parse_metadata(json.dumps(data))


@pytest.mark.parametrize("text", ["[]", "{}", "not json"])
def test_parse_metadata_rejects_non_metadata(text: str) -> None:
    with pytest.raises(ValueError):
        parse_metadata(text)


@pytest.mark.parametrize(
    ("inputs", "meta", "lock", "versioned", "changed"),
    [
        (INPUTS, META, TINY, True, ()),
        (INPUTS, None, TINY, False, ("metadata",)),
        (INPUTS, META, None, False, ("pylock",)),
        (INPUTS, None, None, False, ("metadata", "pylock")),
        (LockInputs("sha256:xx", "sha256:33", "sha256:44"), META, TINY, False, ("lock_input_hash",)),
        (INPUTS, META, TINY.replace('"2.0"', '"2.1"'), False, ("requirements_hash",)),
        (INPUTS, META, "[[packages]\n", False, ("requirements_hash",)),
        (INPUTS, META, "# edited comment\n" + TINY, False, ()),
        (LockInputs("sha256:11", "sha256:xx", "sha256:44"), META, TINY, False, ("other_inputs_hash",)),
        (LockInputs("sha256:11", "sha256:33", "sha256:xx"), META, TINY, True, ("version_inputs_hash",)),
        # version inputs only matter for versioned layers
        (LockInputs("sha256:11", "sha256:33", "sha256:xx"), META, TINY, False, ()),
    ],
)  # fmt: skip
def test_lock_status(
    inputs: LockInputs,
    meta: LockMetadata | None,
    lock: str | None,
    versioned: bool,
    changed: tuple[str, ...],
) -> None:
    status = lock_status(inputs, meta, lock, versioned=versioned)
    assert status.changed == changed
    assert status.valid == (not changed)
    assert status.needs_full_lock == (bool(changed) and changed != ("version_inputs_hash",))


def test_first_lock_metadata() -> None:
    for versioned in (False, True):
        meta = next_metadata(None, TINY, INPUTS, T0, versioned)
        assert meta == LockMetadata(
            "sha256:11", requirements_hash(TINY), "sha256:33", "sha256:44", 1,
            "2025-09-01T12:30:15+00:00",
        )  # fmt: skip


@pytest.mark.parametrize("versioned", [False, True])
def test_identical_relock_keeps_metadata(versioned: bool) -> None:
    previous = META if versioned else LockMetadata(**{**META.__dict__, "lock_version": 1})
    meta = next_metadata(previous, "# new header\n" + TINY, INPUTS, T0, versioned)
    assert meta is previous
    assert render_metadata(meta) == render_metadata(previous)


@pytest.mark.parametrize(("versioned", "version"), [(False, 1), (True, 4)])
def test_changed_lock_renews_time_and_version(versioned: bool, version: int) -> None:
    changed = TINY.replace('"2.0"', '"2.1"')
    meta = next_metadata(META, changed, INPUTS, T0, versioned)
    assert meta.requirements_hash == requirements_hash(changed)
    assert (meta.locked_at, meta.lock_version) == ("2025-09-01T12:30:15+00:00", version)


def test_changed_inputs_with_same_lock_keep_time_and_version() -> None:
    inputs = LockInputs("sha256:new", "sha256:new2", "sha256:44")
    meta = next_metadata(META, TINY, inputs, T0, versioned=True)
    assert (meta.locked_at, meta.lock_version) == (META.locked_at, META.lock_version)
    assert (meta.lock_input_hash, meta.other_inputs_hash) == ("sha256:new", "sha256:new2")


def test_version_inputs_change_bumps_only_versioned_layers() -> None:
    inputs = LockInputs("sha256:11", "sha256:33", "sha256:new")
    bumped = next_metadata(META, TINY, inputs, T0, versioned=True)
    assert (bumped.locked_at, bumped.lock_version) == ("2025-09-01T12:30:15+00:00", 4)
    plain = next_metadata(META, TINY, inputs, T0, versioned=False)
    assert (plain.locked_at, plain.lock_version, plain.version_inputs_hash) == (
        META.locked_at,
        1,
        "sha256:new",
    )


@pytest.mark.parametrize(
    ("candidate", "clamp", "locked_at"),
    [
        (T0, datetime(2025, 1, 1, tzinfo=UTC), "2025-01-01T00:00:00+00:00"),
        (T0, datetime(2026, 1, 1, tzinfo=UTC), "2025-09-01T12:30:15+00:00"),
        (T0, datetime(2025, 1, 1), "2025-01-01T00:00:00+00:00"),  # naive: taken as UTC
        (T0.astimezone(timezone(timedelta(hours=2))), None, "2025-09-01T12:30:15+00:00"),
        (datetime(2025, 9, 1, 12, 30, 15), None, "2025-09-01T12:30:15+00:00"),
    ],
)
def test_lock_time_clamp(candidate: datetime, clamp: datetime | None, locked_at: str) -> None:
    meta = next_metadata(None, TINY, INPUTS, candidate, False, exclude_newer=clamp)
    assert meta.locked_at == locked_at
