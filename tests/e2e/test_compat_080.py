"""End to end: a stack whose locks were written by venvstacks 0.8.0 works unchanged.

The lock metadata is rewritten the way 0.8.0 writes it: the six keys it knows (no
``venvstacks_inputs_hash``), ``requirements_hash`` computed in this file from 0.8.0's documented
algorithm (independently of venvstacks' own code), ``indent=2``, sorted keys. Such a stack must
show as locked, build without running uv, and publish metadata carrying the same hash.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tomllib
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlsplit

import pytest
from fixtures_stacks import StackProject, write_basic_stack
from packaging.markers import Marker
from packaging.version import Version

pytestmark = pytest.mark.slow

SHARED = "sys_platform == 'from_lower_layer'"
EXTRA_APP = """
[[applications]]
name = "c"
frameworks = ["frame"]
launch_module = "app_c.py"
requirements = ["vs-util", "vs-base; platform_machine == 'x86_64'"]
"""


def two_platform_spec(text: str) -> str:
    """Lock for two platforms, so that uv's markers survive; frame2 (a native wheel) for one."""
    text = text.replace(
        'platforms = ["linux_x86_64"]', 'platforms = ["linux_x86_64", "linux_aarch64"]', 1
    )
    text = text.replace(
        'requirements = ["vs-frame"]',
        'requirements = ["vs-frame", "vs-util; platform_machine == \'aarch64\'"]',
        1,
    )
    return text.replace(
        'requirements = ["vs-frame2", "vs-native"]',
        'requirements = ["vs-frame2", "vs-native"]\nplatforms = ["linux_x86_64"]',
        1,
    )


OUR_KEYS = {"venvstacks_inputs_hash"}


def hash_080(lock_text: str) -> str:
    """0.8.0's requirements_hash, from the facts recorded in issue 10."""
    lines: list[str] = []
    for pkg in tomllib.loads(lock_text).get("packages", []):
        line = f"{pkg['name']}=={Version(pkg['version'])}"
        marker = pkg.get("marker")
        if marker:
            text = str(Marker(marker)).replace('"', "'")
            if text == SHARED:
                text = ""
            elif SHARED in text:
                text = text.removeprefix("(").removesuffix(f" and {SHARED}").removesuffix(")")
            if text:
                line += f" ; {text}"
        lines.append(f"{line} from {pkg.get('index') or 'unspecified index'}")
        for wheel in pkg.get("wheels", []):
            name = (
                wheel.get("name")
                or PurePosixPath(wheel.get("path") or unquote(urlsplit(wheel["url"]).path)).name
            )
            lines += [f"{name}:{alg}:{digest}" for alg, digest in wheel["hashes"].items()]
    return "sha256:" + hashlib.sha256("".join(sorted(lines)).encode()).hexdigest()


def rewrite_as_080(requirements: Path) -> dict[str, str]:
    """Make every lock's metadata look as 0.8.0 wrote it; return env -> requirements_hash."""
    hashes = {}
    for meta_path in sorted(requirements.glob("*/pylock.*.meta.json")):
        lock_text = meta_path.with_name(meta_path.name.replace(".meta.json", ".toml")).read_text()
        meta = {k: v for k, v in json.loads(meta_path.read_text()).items() if k not in OUR_KEYS}
        meta["requirements_hash"] = hash_080(lock_text)
        meta_path.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
        hashes[meta_path.parent.name] = meta["requirements_hash"]
    return hashes


@pytest.fixture
def stack_080(
    tmp_path: Path, runtime_archive_dir: Path, wheelhouse: Path, runtime_versions: Mapping[str, str]
) -> tuple[StackProject, dict[str, str]]:
    """A stack locked elsewhere, copied (same depth) with 0.8.0 metadata and no build dir."""
    source = StackProject(tmp_path / "locked" / "stack", runtime_archive_dir, wheelhouse)
    source.root.mkdir(parents=True)
    write_basic_stack(source, runtime_versions)
    source.write("app_c.py", "import vs_util, vs_base\nprint('c', vs_util.__version__)\n")
    source.spec.write_text(two_platform_spec(source.spec.read_text()) + EXTRA_APP)
    source.lock()
    project = StackProject(tmp_path / "user" / "stack", runtime_archive_dir, wheelhouse)
    shutil.copytree(source.root, project.root, ignore=shutil.ignore_patterns("_build"))
    return project, rewrite_as_080(project.root / "requirements")


def test_080_locks_build_and_publish_unchanged(
    stack_080: tuple[StackProject, dict[str, str]],
) -> None:
    project, hashes = stack_080
    locks = project.lock_files()
    # The inherited packages are there (and hashed without their shared clause).
    app_c = (project.root / "requirements/app-c/pylock.app-c.toml").read_text()
    assert f"(platform_machine == 'x86_64' and sys_platform == 'linux') and {SHARED}" in app_c

    shown = json.loads(project.run("show", str(project.spec), "--json").stdout)
    valid = {
        layer["name"]: layer["has_valid_lock"]
        for category in ("runtimes", "frameworks", "applications")
        for layer in shown[category]
    }
    assert valid and all(valid.values()), valid
    status = project.run("status", str(project.spec), "--json").stdout
    assert "edited or damaged" not in status and "not locked" not in status

    project.build()
    # No uv run: no resolve project was written, and no lock file changed by a byte.
    assert not (project.build_dir / ".venvstacks" / "resolve").exists()
    assert project.lock_files() == locks
    assert project.run_app("app-c", "app_c").startswith("c 2.0")

    out = project.root / "_artifacts"
    project.run("publish", str(project.spec), "--output-dir", str(out))
    for env, expected in hashes.items():
        published = json.loads(
            (out / "__venvstacks__" / "env_metadata" / f"{env}.json").read_text()
        )
        assert (
            published["requirements_hash"]
            == expected
            == project.lock_meta(env)["requirements_hash"]
        )
    assert project.lock_files() == locks
