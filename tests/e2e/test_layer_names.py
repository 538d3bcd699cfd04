"""End to end: a layer name uv could not use is refused by every command when the spec loads."""

from __future__ import annotations

import pytest
from fixtures_stacks import StackProject

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("name", ["框架", "my app", ".hidden"])
def test_unusable_layer_name_is_one_line_from_every_command(
    stack_project: StackProject, name: str
) -> None:
    project = stack_project
    project.write(
        "venvstacks.toml",
        f"""\
        [[runtimes]]
        name = "cpython-3.11"
        python_implementation = "cpython@3.11"
        requirements = []

        [[frameworks]]
        name = "{name}"
        runtime = "cpython-3.11"
        requirements = []
        """,
    )
    spec = str(project.spec)
    commands = [
        ["show", spec], ["graph", spec], ["status", spec], ["lock", spec],
        ["build", spec, "--lock-if-needed"], ["publish", spec], ["local-export", spec],
        ["show"],  # the spec found in the current folder
    ]  # fmt: skip
    for args in commands:
        result = project.run(*args, check=False)
        assert result.returncode == 1, (args, result)
        lines = result.stderr.splitlines()
        assert len(lines) == 1, (args, result.stderr)
        assert spec in lines[0] and f"framework {name!r}" in lines[0], (args, lines[0])
        assert "Traceback" not in result.stderr
    assert not (project.root / "requirements").exists()
