"""`build --remote-cache` options: misuse is a usage error (exit 2) or a one-line error (exit 1)
before anything is loaded, built or sent."""

from __future__ import annotations

from pathlib import Path

import pytest

from venvstacks.cli.main import main


@pytest.mark.parametrize(
    "argv",
    [
        ["build", "missing.toml", "--remote-cache-read-only"],
        ["build", "missing.toml", "--remote-cache", "oci://h:1/r", "--no-layer-cache"],
        ["build", "missing.toml", "--remote-cache", "oci://h:1/r", "--tag", "v1"],
        ["build", "missing.toml", "--remote-cache", "oci://h:1/r", "--plain-http", "--insecure"],
        ["build", "missing.toml", "--plain-http"],
    ],
)
def test_misused_remote_cache_options_are_usage_errors(
    argv: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("oci://h:1/Team", "not a valid repository name"),
        ("oci://h:1/team:v1", "without a tag"),
        ("http://h:1/team", "starts with oci://"),
    ],
)
def test_bad_remote_cache_references_are_usage_errors(
    url: str, message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    monkeypatch.chdir(tmp_path)
    assert main(["build", "missing.toml", "--remote-cache", url, "--plain-http"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("Error: Invalid value for '--remote-cache'") and message in err[-1]


def test_the_transport_options_serve_the_remote_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    # Accepted: it fails later, on the missing spec, not on the options.
    assert main(["build", "missing.toml", "--remote-cache", "oci://h:1/r", "--plain-http"]) == 1
    assert "missing.toml" in capsys.readouterr().err
