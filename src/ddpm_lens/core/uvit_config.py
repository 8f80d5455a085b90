"""The study's U-ViT config files (``sun-messi/U-VIT-CS`` ``configs/*.py``), read without running them.

Those files are Python for ``ml_collections``: a ``d(**kwargs)`` helper returning
``ml_collections.ConfigDict(initial_dictionary=kwargs)`` and a ``get_config()`` that fills a
ConfigDict. This module parses the file with :mod:`ast` and evaluates only:

- literals (numbers, strings, True/False/None, lists, tuples, dicts) and arithmetic on numbers
  (``126*2``, ``-1``, ``1e-4 / 2``);
- ``d(key=...)`` and ``ml_collections.ConfigDict(...)`` calls of such values (keywords, a dict,
  or ``initial_dictionary=``);
- names assigned earlier in ``get_config``, ``config.a.b`` reads of values set earlier,
  ``s['key']`` subscripts, and ``sum(s['key'] for s in <list>)`` (the study's
  ``total_steps = sum(s['n_steps'] for s in config.curriculum.stages)``).

Anything else (another call, an import other than ``import ml_collections``, a loop, a
comprehension with conditions, ...) is refused, naming the file and line; nothing in the file
is ever executed. :func:`study_to_config_dict` maps the result onto ddpm-lens's layout::

    raw = read_study_config("configs/celeba64_uvit_small.py")   # {"nnet": {...}, "train": {...}, ...}
    cfg = load_config("configs/celeba64_uvit_small.py")          # the same through core.config
"""

from __future__ import annotations

import ast
import operator
import os
from pathlib import Path
from typing import Any

from ddpm_lens.util.errors import UserError

_BINOPS = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY = {ast.USub: operator.neg, ast.UAdd: operator.pos}


class _Refused(Exception):
    def __init__(self, node: ast.AST, what: str):
        super().__init__(what)
        self.line = getattr(node, "lineno", 0)
        self.what = what


def read_study_config(path: str | os.PathLike) -> dict[str, Any]:
    """The nested dict ``get_config()`` of a study U-ViT config file would return (never run)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
        tree = ast.parse(text, filename=str(path))
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"config {path} cannot be read ({exc}): pass a UTF-8 Python config file") from None
    except SyntaxError as exc:
        raise UserError(f"config {path} is not valid Python at line {exc.lineno}: {exc.msg}") from None
    lines = text.splitlines()
    try:
        return _Module(tree).config()
    except _Refused as r:
        code = lines[r.line - 1].strip() if 0 < r.line <= len(lines) else ""
        raise UserError(
            f"config {path} line {r.line}: {r.what} ({code!r}); ddpm-lens reads these files without "
            "running them, so only literals, d(...)/ConfigDict(...) of literals and arithmetic are "
            "allowed: write the value out"
        ) from None


def _is_configdict_call(node: ast.AST) -> bool:
    f = node.func if isinstance(node, ast.Call) else None
    return (
        isinstance(f, ast.Attribute)
        and f.attr in ("ConfigDict", "FrozenConfigDict")
        and isinstance(f.value, ast.Name)
        and f.value.id == "ml_collections"
    )


class _Module:
    def __init__(self, tree: ast.Module):
        self.tree = tree
        self.helpers: set[str] = set()

    def config(self) -> dict[str, Any]:
        get_config = None
        for node in self.tree.body:
            if _is_docstring(node):
                continue
            if isinstance(node, ast.Import) and [a.name for a in node.names] == ["ml_collections"]:
                continue
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                raise _Refused(node, "an import other than 'import ml_collections'")
            if isinstance(node, ast.FunctionDef) and node.name == "get_config":
                get_config = node
                continue
            if isinstance(node, ast.FunctionDef) and self._is_helper(node):
                self.helpers.add(node.name)
                continue
            raise _Refused(node, "a statement that is not a literal config")
        if get_config is None:
            raise _Refused(self.tree, "no get_config() function")
        return _Body(self).run(get_config)

    @staticmethod
    def _is_helper(node: ast.FunctionDef) -> bool:
        """``def d(**kwargs): return ml_collections.ConfigDict(initial_dictionary=kwargs)``."""
        body = [n for n in node.body if not _is_docstring(n)]
        a = node.args
        if a.args or a.posonlyargs or a.kwonlyargs or a.vararg or a.kwarg is None or node.decorator_list:
            return False
        if len(body) != 1 or not isinstance(body[0], ast.Return) or not _is_configdict_call(body[0].value):
            return False
        call = body[0].value
        args = [*call.args, *(k.value for k in call.keywords)]
        return len(args) == 1 and isinstance(args[0], ast.Name) and args[0].id == a.kwarg.arg


def _is_docstring(node: ast.AST) -> bool:
    return (
        isinstance(node, ast.Expr)
        and isinstance(node.value, ast.Constant)
        and isinstance(node.value.value, str)
    )


class _Body:
    """Evaluates get_config()'s statements on plain dicts."""

    def __init__(self, module: _Module):
        self.helpers = module.helpers
        self.names: dict[str, Any] = {}
        self.config_name: str | None = None

    def run(self, fn: ast.FunctionDef) -> dict[str, Any]:
        if fn.args.args or fn.args.vararg or fn.args.kwarg or fn.args.kwonlyargs or fn.decorator_list:
            raise _Refused(fn, "get_config() with arguments or decorators")
        for node in fn.body:
            if _is_docstring(node):
                continue
            if isinstance(node, ast.Return):
                if isinstance(node.value, ast.Name) and node.value.id == self.config_name:
                    return self.names[self.config_name]
                raise _Refused(node, "a return of something other than the config")
            if isinstance(node, ast.Assign) and len(node.targets) == 1:
                self.assign(node.targets[0], self.value(node.value))
                continue
            raise _Refused(node, "a statement that is not an assignment")
        raise _Refused(fn, "get_config() without 'return config'")

    def assign(self, target: ast.AST, value: Any) -> None:
        if isinstance(target, ast.Name):
            if self.config_name is None and isinstance(value, dict):
                self.config_name = target.id
            self.names[target.id] = value
            return
        if isinstance(target, ast.Attribute):
            owner = self.value(target.value)
            if isinstance(owner, dict):
                owner[target.attr] = value
                return
        if isinstance(target, ast.Subscript):
            owner, key = self.value(target.value), self.value(target.slice)
            if isinstance(owner, dict) and isinstance(key, str):
                owner[key] = value
                return
        raise _Refused(target, "an assignment to something other than a config key")

    def value(self, node: ast.AST) -> Any:
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, (ast.List, ast.Tuple)):
            items = [self.value(e) for e in node.elts]
            return items if isinstance(node, ast.List) else tuple(items)
        if isinstance(node, ast.Dict):
            if any(k is None for k in node.keys):
                raise _Refused(node, "a '**' expansion")
            return {self.value(k): self.value(v) for k, v in zip(node.keys, node.values)}
        if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
            return _UNARY[type(node.op)](self.number(node.operand))
        if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
            left, right = self.number(node.left), self.number(node.right)
            if isinstance(node.op, ast.Pow) and abs(right) > 64:
                raise _Refused(node, "a power with an exponent over 64")
            try:
                return _BINOPS[type(node.op)](left, right)
            except ArithmeticError as exc:
                raise _Refused(node, f"arithmetic that fails ({exc})") from None
        if isinstance(node, ast.Name):
            if node.id in self.names:
                return self.names[node.id]
            raise _Refused(node, f"the name '{node.id}', not assigned before")
        if isinstance(node, ast.Attribute):
            owner = self.value(node.value)
            if isinstance(owner, dict) and node.attr in owner:
                return owner[node.attr]
            raise _Refused(node, f"a read of '{node.attr}', not set before")
        if isinstance(node, ast.Subscript):
            owner, key = self.value(node.value), self.value(node.slice)
            try:
                return owner[key]
            except (KeyError, IndexError, TypeError):
                raise _Refused(node, "a subscript of something that has no such item") from None
        if isinstance(node, ast.Call):
            return self.call(node)
        raise _Refused(node, f"a {type(node).__name__} expression")

    def number(self, node: ast.AST) -> int | float:
        v = self.value(node)
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise _Refused(node, "arithmetic on something that is not a number")
        return v

    def call(self, node: ast.Call) -> Any:
        f = node.func
        if isinstance(f, ast.Name) and f.id in self.helpers:
            if node.args:
                raise _Refused(node, f"{f.id}(...) with positional arguments")
            return self.keywords(node)
        if _is_configdict_call(node):
            if len(node.args) > 1:
                raise _Refused(node, "ConfigDict(...) with several positional arguments")
            out = dict(self.value(node.args[0])) if node.args else {}
            for kw in node.keywords:
                if kw.arg == "initial_dictionary":
                    out.update(self.value(kw.value))
                elif kw.arg is None:
                    raise _Refused(node, "a '**' expansion")
            return out
        if isinstance(f, ast.Name) and f.id == "sum" and len(node.args) == 1 and not node.keywords:
            return self.sum_of(node.args[0])
        raise _Refused(node, "a function call")

    def keywords(self, node: ast.Call) -> dict[str, Any]:
        if any(kw.arg is None for kw in node.keywords):
            raise _Refused(node, "a '**' expansion")
        return {kw.arg: self.value(kw.value) for kw in node.keywords}

    def sum_of(self, node: ast.AST) -> int | float:
        """``sum(<expr of v> for v in <list>)``: one loop, no conditions."""
        if not isinstance(node, ast.GeneratorExp) or len(node.generators) != 1:
            raise _Refused(node, "a sum(...) of something other than one generator")
        gen = node.generators[0]
        if gen.ifs or gen.is_async or not isinstance(gen.target, ast.Name):
            raise _Refused(node, "a generator with conditions or unpacking")
        items = self.value(gen.iter)
        if not isinstance(items, (list, tuple)):
            raise _Refused(node, "a sum over something that is not a list")
        total: int | float = 0
        saved = self.names.get(gen.target.id, _MISSING)
        try:
            for item in items:
                self.names[gen.target.id] = item
                total += self.number(node.elt)
        finally:
            if saved is _MISSING:
                self.names.pop(gen.target.id, None)
            else:
                self.names[gen.target.id] = saved
        return total


_MISSING = object()

# the study's train.py: VPSDE(beta_min=0.1, beta_max=20), nnet(x, t * 999): the linear DDPM schedule
_DIFFUSION = {"timesteps": 1000, "beta_schedule": "linear", "beta_start": 1e-4, "beta_end": 0.02}
_PRED = {"noise_pred": "eps", "x0_pred": "x_0"}


def study_to_config_dict(raw: dict[str, Any], source: str) -> dict[str, Any]:
    """The study's U-ViT config (as :func:`read_study_config` returns it) in ddpm-lens's layout.

    ``nnet`` becomes ``model`` (``name: uvit``), ``dataset.name``/``resolution`` the dataset,
    ``optimizer.lr``, ``train.batch_size``, ``train.n_steps`` (as ``max_steps``),
    ``lr_scheduler.warmup_steps``, ``ema_rate`` (default 0.9999), ``grad_clip`` and ``seed`` the
    train section; ``pred`` the model's prediction. Its step-staged ``curriculum`` and
    ``sparsity_enabled`` / ``regularization_enabled`` switches are not carried over: they say how
    the study trained, not what the model is (train with a JSON config: README, Other backbones).
    """
    nnet = raw.get("nnet")
    if not isinstance(nnet, dict) or nnet.get("name") != "uvit":
        raise UserError(
            f"config {source}: 'config.nnet' must be d(name='uvit', ...) (the study's U-ViT); "
            f"got {nnet.get('name') if isinstance(nnet, dict) else nnet!r}"
        )
    dataset = raw.get("dataset") if isinstance(raw.get("dataset"), dict) else {}
    train = raw.get("train") if isinstance(raw.get("train"), dict) else {}
    opt = raw.get("optimizer") if isinstance(raw.get("optimizer"), dict) else {}
    sched = raw.get("lr_scheduler") if isinstance(raw.get("lr_scheduler"), dict) else {}
    pred = raw.get("pred", "noise_pred")
    if pred not in _PRED:
        raise UserError(f"config {source}: 'config.pred' is {pred!r}; valid: {', '.join(_PRED)}")
    out_train = {
        k: v
        for k, v in {
            "lr": opt.get("lr"),
            "batch_size": train.get("batch_size"),
            "max_steps": train.get("n_steps"),
            "warmup": sched.get("warmup_steps"),
            "ema_decay": raw.get("ema_rate", 0.9999),
            "grad_norm": raw.get("grad_clip", 0.0),
            "seed": raw.get("seed"),
        }.items()
        if v is not None
    }
    out_dataset = {k: dataset[k] for k in ("name", "resolution") if k in dataset}
    out_dataset.setdefault("resolution", nnet.get("img_size", 64))
    return {
        "dataset": out_dataset,
        "diffusion": {**_DIFFUSION, "model_mean_type": _PRED[pred]},
        "model": nnet,
        "train": out_train,
    }
