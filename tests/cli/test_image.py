"""`venvstacks image` option values: malformed ones are usage errors before any work."""

from __future__ import annotations

from pathlib import Path

import pytest

from venvstacks.cli.main import main


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--base", "foo:bar", "--to", "oci-layout:dest"], "--base 'foo:bar': expected"),
        (["--base", "oci-layout:base", "--to", "http://x"], "--to 'http://x': expected"),
        (["--base", "oci-layout:base", "--to", "oci-layout:d", "--platform", "x"], "OS/ARCH"),
        (["--base", "oci-layout:base", "--to", "oci-layout:d", "--prefix", "rel"], "absolute"),
    ],
)
def test_malformed_values_are_usage_errors(
    options: list[str], message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    monkeypatch.chdir(tmp_path)
    assert main(["image", "missing.toml", "app", *options]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("Error: ") and message in err[-1], err
    assert list(tmp_path.iterdir()) == []
