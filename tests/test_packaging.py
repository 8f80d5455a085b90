"""The wheel that `pip install .` builds: the package data it must carry and the
dependencies it must declare (the fresh-venv install itself runs in CI: scripts/fresh_install_demo.sh)."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> zipfile.ZipFile:
    """The project's wheel, built offline from a clean copy of the sources."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "src", src / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    cmd = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "--no-index"]
    out = subprocess.run(
        [*cmd, "-w", str(tmp / "dist"), str(src)], capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-2000:]
    (path,) = (tmp / "dist").glob("ddpm_lens-*.whl")
    return zipfile.ZipFile(path)


def test_wheel_holds_every_module_the_demo_models_and_the_report_template(wheel):
    names = set(wheel.namelist())
    package = ROOT / "src"
    wanted = {
        p.relative_to(package).as_posix()
        for p in package.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and ".egg-info" not in str(p)
    }
    assert wanted - names == set()
    for data in (
        "ddpm_lens/demo/baseline.safetensors",
        "ddpm_lens/demo/curriculum.safetensors",
        "ddpm_lens/demo/baseline.json",
        "ddpm_lens/output/templates/report.html",
    ):
        assert data in names and wheel.getinfo(data).file_size > 0, data


def _requirements(wheel) -> set[str]:
    """Distribution names the wheel's METADATA requires at run time (extras left out)."""
    (meta,) = [n for n in wheel.namelist() if n.endswith(".dist-info/METADATA")]
    reqs = set()
    for line in wheel.read(meta).decode().splitlines():
        if line.startswith("Requires-Dist:") and "extra ==" not in line:
            reqs.add(_canonical(re.match(r"Requires-Dist:\s*([A-Za-z0-9._-]+)", line).group(1)))
    return reqs


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _imports(source: str) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def test_every_runtime_import_is_in_the_wheel_or_a_declared_dependency(wheel):
    modules = {n[: -len(".py")].replace("/", ".").removesuffix(".__init__") for n in wheel.namelist()}
    modules = {m for m in modules if m.startswith("ddpm_lens")}
    imported = set()
    for name in wheel.namelist():
        if name.endswith(".py"):
            imported |= _imports(wheel.read(name).decode())
    ours = {m for m in imported if m.split(".")[0] == "ddpm_lens"}
    assert ours - modules == set(), "imports of modules the wheel lacks"
    third_party = {m.split(".")[0] for m in imported} - {"ddpm_lens", "__future__"} - sys.stdlib_module_names
    providers = importlib.metadata.packages_distributions()
    declared = _requirements(wheel)
    assert "safetensors" in declared  # the shipped demo models are .safetensors
    undeclared = {m for m in third_party if not {_canonical(d) for d in providers.get(m, [m])} & declared}
    assert undeclared == set(), f"imported at run time but not in [project] dependencies: {undeclared}"
