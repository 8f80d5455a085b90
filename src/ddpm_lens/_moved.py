"""Old module paths of release 0.1 (before the stage subpackages), importable for one release.

``import ddpm_lens.unet`` still works and gives ``ddpm_lens.core.unet`` with a
``DeprecationWarning`` naming the new path. A module that was split in two or more
(``pipeline``, ``visualize``, ``outputs``) becomes a stand-in whose attributes are looked up
in each of its successors in turn. Remove this file, and its line in ``__init__``, in 0.3.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import types
import warnings

# old name -> the modules that now hold its contents, the first one for single moves
MOVED: dict[str, tuple[str, ...]] = {
    "errors": ("util.errors",),
    "atomic": ("util.atomic",),
    "devices": ("util.devices",),
    "digests": ("util.digests",),
    "config": ("core.config",),
    "nn": ("core.nn",),
    "unet": ("core.unet",),
    "schedules": ("core.schedules",),
    "diffusion": ("core.diffusion",),
    "checkpoint": ("core.checkpoint",),
    "features": ("core.features",),
    "data": ("data.datasets",),
    "synthetic_faces": ("data.synthetic_faces",),
    "trainer": ("train.trainer",),
    "ema": ("train.ema",),
    "timesteps": ("train.timesteps",),
    "distributed": ("train.distributed",),
    "run_files": ("train.run_files",),
    "stats": ("analysis.stats",),
    "similarity": ("analysis.similarity",),
    "summary": ("analysis.summary", "analysis.hypotheses"),
    "visualize": ("analysis.compare", "analysis.plan"),
    "pipeline": (
        "analysis.model_pair",
        "analysis.inputs",
        "analysis.stream",
        "analysis.pair_accumulators",
        "analysis.plan",
        "analysis.timings",
    ),
    "png": ("output.png",),
    "grid": ("output.grid",),
    "render": ("output.render",),
    "plots": ("output.plots",),
    "report": ("output.report",),
    "manifest": ("output.manifest",),
    "tables": ("output.csv_table",),
    "outputs": ("output.figure_writer", "output.run_tables", "output.run_readme", "output.run_folder"),
}

_PACKAGE = "ddpm_lens"


class _Successors(types.ModuleType):
    """Stand-in for a split module: attribute look-ups go to its successors, in order."""

    def __init__(self, name: str, successors: tuple[str, ...]):
        super().__init__(name)
        self._successors = successors

    def __getattr__(self, attr: str):
        if attr.startswith("__"):
            raise AttributeError(attr)
        for target in self._successors:
            module = importlib.import_module(target)
            if hasattr(module, attr):
                return getattr(module, attr)
        raise AttributeError(
            f"{self.__name__} has no attribute {attr!r} (now in {', '.join(self._successors)})"
        )


class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path=None, target=None):
        prefix, _, old = fullname.partition(".")
        if prefix != _PACKAGE or old not in MOVED:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec):
        old = spec.name.split(".", 1)[1]
        targets = tuple(f"{_PACKAGE}.{t}" for t in MOVED[old])
        warnings.warn(
            f"{spec.name} moved to {' / '.join(targets)}; the old path goes in ddpm-lens 0.3",
            DeprecationWarning,
            stacklevel=3,
        )
        if len(targets) == 1:
            return importlib.import_module(targets[0])
        return _Successors(spec.name, targets)

    def exec_module(self, module):
        pass


def install() -> None:
    if not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.append(_Finder())
