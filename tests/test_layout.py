"""The package layout: stages import only downward (util <- core <- data <- {train, analysis}
<- output <- cli), checked by parsing every module's imports, function-level ones included."""

from __future__ import annotations

import ast
from pathlib import Path

import ddpm_lens

PACKAGE_ROOT = Path(ddpm_lens.__file__).resolve().parent
LEVEL = {"util": 0, "core": 1, "data": 2, "train": 3, "analysis": 3, "output": 4, "cli": 5}
# the one sideways permission: training writes its sample grids with output's image writers
EXTRA = {"train": {"ddpm_lens.output.grid", "ddpm_lens.output.png"}}


def imported_modules(path: Path, package: str) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in the file, relative ones resolved."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            out.append((node.lineno, module))
            # `from ddpm_lens.output import png` imports the module ddpm_lens.output.png
            out += [(node.lineno, f"{module}.{alias.name}") for alias in node.names]
    return out


def stage_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "ddpm_lens" and parts[1] in LEVEL else None


def layout_violations(root: Path) -> list[str]:
    """Every import against the allowed direction in the package at ``root``, as
    ``path:line: stage imports target``."""
    problems = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        stage = rel.parts[0] if len(rel.parts) > 1 else None
        package = ".".join(("ddpm_lens", *rel.parts[:-1]))
        for line, module in imported_modules(path, package):
            target = stage_of(module)
            if stage is None or target is None or target == stage:
                continue  # top-level modules (__init__, __main__) and imports within a stage
            allowed = LEVEL[target] < LEVEL[stage]
            if stage == "analysis" and target == "train" or stage == "train" and target == "analysis":
                allowed = False
            if any(module == m or module.startswith(m + ".") for m in EXTRA.get(stage, ())):
                allowed = True
            if not allowed:
                problems.append(f"{rel}:{line}: {stage} imports {module}")
    return sorted(set(problems))


def test_the_package_imports_only_downward():
    assert layout_violations(PACKAGE_ROOT) == []


def test_every_stage_is_a_documented_subpackage():
    for stage in LEVEL:
        init = PACKAGE_ROOT / stage / "__init__.py"
        doc = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8")))
        assert doc and "May import" in doc, f"{init} needs a docstring that says what it may import"


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "ddpm_lens"
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def test_a_planted_upward_import_is_named(tmp_path):
    root = _tree(
        tmp_path,
        {
            "__init__.py": "",
            "core/__init__.py": "",
            "core/unet.py": "import torch\nfrom ddpm_lens.util.errors import UserError\n",
            "core/bad.py": "def f():\n    from ddpm_lens.output import render\n",
            "analysis/stats.py": "from ..output.plots import draw\n",
            "analysis/ok.py": "from . import stats\nfrom ddpm_lens.core import unet\n",
            "train/trainer.py": (
                "from ddpm_lens.output.grid import image_grid\nimport ddpm_lens.analysis.stats\n"
            ),
            "output/report.py": "from ddpm_lens.cli import main\n",
        },
    )
    assert layout_violations(root) == [
        "analysis/stats.py:1: analysis imports ddpm_lens.output.plots",
        "analysis/stats.py:1: analysis imports ddpm_lens.output.plots.draw",
        "core/bad.py:2: core imports ddpm_lens.output",
        "core/bad.py:2: core imports ddpm_lens.output.render",
        "output/report.py:1: output imports ddpm_lens.cli",
        "output/report.py:1: output imports ddpm_lens.cli.main",
        "train/trainer.py:2: train imports ddpm_lens.analysis.stats",
    ]
