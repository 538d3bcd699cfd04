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


@pytest.mark.parametrize(
    ("app", "expected"),
    [
        ("x2", "APP 'x2' matches no application (did you mean 'x'?); applications: x"),
        ("b", "APP 'b' matches no application; 'b' is a framework layer, not an application; "),
    ],
)
def test_unknown_app_names_the_spec_and_the_applications(
    app: str, expected: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    spec = tmp_path / "venvstacks.toml"
    specs = Path(__file__).parents[1] / "data" / "specs"
    spec.write_text((specs / "valid_diamond.toml").read_text())
    for module in specs.glob("*.py"):
        (tmp_path / module.name).write_text(module.read_text())
    before = sorted(tmp_path.iterdir())
    monkeypatch.chdir(tmp_path)
    code = main(["image", str(spec), app, "--base", "oci-layout:base", "--to", "oci-layout:d"])
    assert code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {spec}: {expected}"), err
    assert sorted(tmp_path.iterdir()) == before  # nothing built, no image written
