"""The example stacks in specs/: they load, their committed locks are current, the demo runs."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from venvstacks.plan.layers import plan_stack
from venvstacks.spec.stack import load_stack_spec

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted(p.parent.name for p in (ROOT / "specs").glob("*/venvstacks.toml"))
VENVSTACKS = [sys.executable, "-m", "venvstacks"]


def test_the_examples_are_there() -> None:
    assert {"demo", "scientific", "two-runtimes", "pytorch"} <= set(EXAMPLES)


@pytest.mark.parametrize("name", EXAMPLES)
def test_example_plans(name: str) -> None:
    plan = plan_stack(load_stack_spec(ROOT / "specs" / name / "venvstacks.toml"))
    assert plan.enabled


def _layers(status: dict[str, list[dict[str, object]]]) -> list[dict[str, object]]:
    return [layer for kind in ("runtimes", "frameworks", "applications") for layer in status[kind]]


@pytest.mark.parametrize("name", EXAMPLES)
def test_example_locks_are_current(name: str) -> None:
    """Every layer's committed lock matches the spec (relock with `venvstacks lock` if not)."""
    spec = ROOT / "specs" / name / "venvstacks.toml"
    out = subprocess.run(
        [*VENVSTACKS, "show", "--json", str(spec)], capture_output=True, text=True, check=True
    ).stdout
    stale = [l["name"] for l in _layers(json.loads(out)) if not l["has_valid_lock"]]
    assert stale == [], f"specs/{name}: stale locks for {stale}; run `venvstacks lock {spec}`"


@pytest.mark.slow
@pytest.mark.pypi
def test_demo_builds_publishes_deploys_and_runs(tmp_path: Path) -> None:
    """The README's main command, on a copy of the demo (numpy comes from PyPI)."""
    demo = tmp_path / "demo"
    shutil.copytree(ROOT / "specs" / "demo", demo, ignore=shutil.ignore_patterns("_*"))
    spec = demo / "venvstacks.toml"

    def run(*args: str) -> str:
        result = subprocess.run([*VENVSTACKS, *args], capture_output=True, text=True, check=False)
        assert result.returncode == 0, result.stderr
        return result.stdout

    run("build", str(spec), "--publish", "--format", "tar.zst")
    run("deploy", str(demo / "_artifacts"), str(tmp_path / "deployed"))
    out = run("run", str(tmp_path / "deployed"), "demo")
    assert "framework-numpy" in out
    assert "1 + 2 + ... + 100 = 5050" in out
    run("verify", str(tmp_path / "deployed"))


TORCH_WHEELS = sorted(Path("/opt/wheels").glob("torch-2.13.0+cpu-cp311-*.whl"))


@pytest.mark.slow
@pytest.mark.pypi
@pytest.mark.skipif(not TORCH_WHEELS, reason="needs the CPU torch 2.13.0 wheel in /opt/wheels")
def test_pytorch_example_shares_one_torch_layer(tmp_path: Path) -> None:
    """Two apps run on one torch framework; their own archives stay tiny."""
    stack = tmp_path / "pytorch"
    shutil.copytree(ROOT / "specs" / "pytorch", stack, ignore=shutil.ignore_patterns("_*", "requirements"))
    spec = stack / "venvstacks.toml"

    def run(*args: str) -> str:
        result = subprocess.run([*VENVSTACKS, *args], capture_output=True, text=True, check=False)
        assert result.returncode == 0, result.stderr
        return result.stdout

    wheels = str(TORCH_WHEELS[0].parent)
    run("build", str(spec), "--lock-if-needed", "--local-wheels", wheels, "-j", "2", "--publish", "--format", "tar.zst")
    run("deploy", str(stack / "_artifacts"), str(tmp_path / "deployed"), "-j", "2")
    assert "x @ x.T = [[5.0, 14.0], [14.0, 50.0]]" in run("run", str(tmp_path / "deployed"), "tensor-math")
    assert "a tiny model says" in run("run", str(tmp_path / "deployed"), "tiny-model")
    sizes = {p.name: p.stat().st_size for p in (stack / "_artifacts").glob("*.tar.zst")}
    assert sizes["framework-torch.tar.zst"] > 50_000_000
    assert sizes["app-tensor-math.tar.zst"] < 100_000
