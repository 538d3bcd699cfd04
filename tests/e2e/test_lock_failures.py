"""End to end: a failed lock says why, in the layer's terms, with real uv on local wheels.

A conflict between two requirements of one layer names both (and gives no platform hint, since
no choice of platforms fixes it); a package without wheels for one target platform gets the hint
to set `platforms` without that one; a typo in `[tool.uv]` (which uv would silently ignore, and
with it every setting) is an error naming the key.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fixtures_stacks import StackProject
from fixtures_wheels import make_wheel

pytestmark = pytest.mark.slow

STACK = """\
[[runtimes]]
name = "cpython-3.11"
python_implementation = "cpython@{py311}"
requirements = ["vs-base"]
platforms = ["linux_x86_64", "win_amd64"]

[[frameworks]]
name = "fw"
runtime = "cpython-3.11"
requirements = {requirements}
"""


def _lock(project: StackProject, extra: Path) -> tuple[int, str]:
    result = project.run(
        "lock", str(project.spec), *project.source_options(), "--local-wheels", str(extra),
        check=False,
    )  # fmt: skip
    return result.returncode, result.stderr


def test_lock_failure_hints_fit_their_cause(
    stack_project: StackProject, runtime_versions: dict[str, str], tmp_path: Path
) -> None:
    extra = tmp_path / "extra-wheels"
    make_wheel(extra, "vs-needs-old-util", "1.0", requires=("vs-util<2",))
    make_wheel(extra, "vs-needs-new-util", "1.0", requires=("vs-util>=2",))
    project = stack_project

    def spec(requirements: str, tail: str = "") -> None:
        text = STACK.format(py311=runtime_versions["3.11"], requirements=requirements)
        project.write("venvstacks.toml", text + tail)

    spec('["vs-needs-old-util", "vs-needs-new-util"]')
    code, err = _lock(project, extra)
    assert code == 1
    assert "layer framework-fw: two of its requirements conflict" in err
    assert "'vs-needs-new-util' and 'vs-needs-old-util'" in err
    assert "platforms" not in err and "tool.uv.environments" not in err

    spec('["vs-winonly"]')
    code, err = _lock(project, extra)
    assert code == 1
    assert (
        'the resolution failed for linux_x86_64 only; to leave it out, set `platforms = ["win_amd64"]`'
        in err
    )

    spec('["vs-util"]', "\n[tool.uv]\nno-biuld = true\n")
    code, err = _lock(project, extra)
    assert code == 1
    assert (
        "uv rejected the [tool.uv] settings: unknown key 'no-biuld' (did you mean 'no-build'?)"
        in err
    )

    spec('["vs-util"]')
    assert _lock(project, extra)[0] == 0
