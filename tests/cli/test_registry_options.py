"""Registry options on publish, build and deploy: misuse is a usage error (exit 2) or a one-line
error (exit 1) before anything is loaded, built or sent."""

from __future__ import annotations

from pathlib import Path

import pytest

from venvstacks.cli.main import main


@pytest.mark.parametrize(
    "argv",
    [
        ["publish", "missing.toml", "--plain-http"],
        ["publish", "missing.toml", "--tag", "v1"],
        ["publish", "missing.toml", "--mount-from", "team/other"],
        ["publish", "missing.toml", "--to", "oci://h:1/r", "--plain-http", "--insecure"],
        ["build", "missing.toml", "--to", "oci://h:1/r"],
        ["deploy", "some-folder", "target", "--plain-http"],
    ],
)
def test_misused_registry_options_are_usage_errors(
    argv: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["publish", "missing.toml", "--to", "oci://h:1/Team"], "not a valid repository name"),
        (["publish", "missing.toml", "--to", "oci://h:1/team:v1"], "without a tag (use --tag)"),
        (
            ["publish", "missing.toml", "--to", "oci://h:1/team", "--tag", "-x"],
            "not a valid OCI tag",
        ),
    ],
)
def test_malformed_registry_options_are_usage_errors(
    argv: list[str], message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """Like click's own value checks (`--format bogus`): exit 2, the option named."""
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("Error: Invalid value for '--") and message in err[-1], err


def test_a_bad_deploy_source_is_a_one_line_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["deploy", "oci://h:1", "target"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "expected oci://HOST" in err[0]
    assert not (tmp_path / "target").exists()
