"""``ddpm-lens jacobian``'s work: for every model (arm × checkpoint), t and image, the denoiser's
Jacobian spectrum, its symmetric part's trace and participation ratio, and the top singular
vectors of the first image.

Every model sees the same images and the same noise (fixed by seed, image and t), so the models'
differences are theirs, not the draws'. Checkpoints load one at a time; every input is checked
against the first model before any Jacobian is taken, and against each later one as it loads.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from ddpm_lens.analysis.jacobian import (
    Linearised,
    exact_symmetric,
    exact_triplets,
    hutchinson,
    jacobian_by_pullbacks,
    top_singular,
)
from ddpm_lens.analysis.jacobian_map import (
    Setting,
    check_parameterisation,
    check_timesteps,
    denoiser_map,
    noisy_point,
)
from ddpm_lens.core.checkpoint import load_checkpoint
from ddpm_lens.core.diffusion import GaussianDiffusion
from ddpm_lens.util.errors import UserError, warn

METHODS = ("auto", "exact", "fast")
# auto: the dense Jacobian up to this many dimensions (gray 32×32 is 1,024; 3×32×32 is 3,072).
# At 4,096, J is 128 MiB in float64 and its SVD took 95 s (eigvalsh 18 s) on the 2-core development
# machine at load 5, still less than the 4,096 pull-backs (~10 min for the demo model); beyond, J
# and the O(n³) SVD grow past what a CPU should hold.
EXACT_MAX_DIM = 4096


@dataclass(frozen=True)
class Arm:
    label: str
    path: str


@dataclass
class JacobianOptions:
    timesteps: list[int]
    k: int = 80
    method: str = "auto"
    gray32: bool = False
    quantity: str = "x0"
    seed: int = 0
    chunk: int | None = None  # None: found per model by timing (ChunkTuner)
    block: int = 10  # fast path: columns per Krylov step
    depth: int | None = None  # fast path: at most depth + 1 Krylov steps; None: until rtol is met
    rtol: float | None = 1e-3  # fast path: stop once every bound_j <= rtol * sigma_j
    probes: int = 16
    use_ema: bool = True


@dataclass
class JacobianResult:
    spectra: list[dict] = field(default_factory=list)  # one row per model × t × image × rank
    summary: list[dict] = field(default_factory=list)  # one row per model × t × image
    vectors: dict = field(default_factory=dict)  # (model index, t) -> (k, n) left singular vectors, image 0
    models: list[dict] = field(default_factory=list)  # index, arm, checkpoint, epoch, step (U-ViT)
    settings: dict = field(default_factory=dict)


def fast_depth(opts: JacobianOptions, dim: int) -> int | None:
    """The fast path's step cap: ``--depth``, or without it, enough steps for bases of
    min(n, EXACT_MAX_DIM) directions: past that, its two n × m float64 bases and m × m
    projections pass 1 GB at n = 12,288 (and it has made 8,192 products)."""
    if opts.depth is not None or opts.rtol is None:
        return opts.depth
    return max(0, math.ceil(min(dim, EXACT_MAX_DIM) / opts.block) - 1)


def resolve_method(method: str, dim: int) -> str:
    if method not in METHODS:
        raise UserError(f"--method {method!r} is not one of {', '.join(METHODS)}")
    if method == "auto":
        return "exact" if dim <= EXACT_MAX_DIM else "fast"
    return method


def check_inputs(opts: JacobianOptions, setting: Setting, images: torch.Tensor, resolution: int) -> None:
    if images.shape[-1] != resolution or images.shape[-2] != resolution:
        raise UserError(
            f"the images are {images.shape[-2]}×{images.shape[-1]} but the model takes "
            f"{resolution}×{resolution}: "
            f"pass images of the model's resolution (or a --dataset, which is resized to it)"
        )
    if not 1 <= opts.k <= setting.dim:
        raise UserError(
            f"--k {opts.k} is outside 1..{setting.dim}, the input dimension "
            f"({'×'.join(map(str, setting.shape))}): "
            f"ask for at most {setting.dim} singular values"
        )
    for name, value, low in (
        ("--chunk", opts.chunk, 1),
        ("--block", opts.block, 1),
        ("--depth", opts.depth, 0),
        ("--probes", opts.probes, 2),
    ):
        if value is not None and value < low:
            raise UserError(f"{name} must be at least {low}, got {value}")
    if opts.rtol is not None and not 0 < opts.rtol < 1:
        raise UserError(f"--rtol must be between 0 and 1 (e.g. 1e-3), got {opts.rtol}")


def precheck(arms: Sequence[Arm], images: torch.Tensor, opts: JacobianOptions, *, config=None) -> None:
    """Every arm's config against the options and images, before any weights are copied or any
    Jacobian is taken (reads each file's config only)."""
    from ddpm_lens.core.checkpoint import load_weights, resolve_config

    first = None
    for arm in arms:
        cfg = resolve_config(config, load_weights(arm.path, use_ema=opts.use_ema))
        where = f"--arm {arm.label}={arm.path}"
        check_parameterisation(cfg.diffusion.model_mean_type, opts.quantity, where)
        check_timesteps(opts.timesteps, cfg.diffusion.timesteps)
        resolution = cfg.dataset.resolution
        if first is None:
            first = resolution
            setting = Setting("gray32" if opts.gray32 else "full", resolution)
            check_inputs(opts, setting, images, resolution)
        elif resolution != first:
            raise UserError(
                f"{where} takes {resolution}×{resolution} images, the first model {first}×{first}: "
                "compare models of one resolution"
            )


def _load(arm: Arm, config, use_ema: bool, device):
    model, weights, cfg = load_checkpoint(config, arm.path, use_ema=use_ema, device=device)
    model.eval().requires_grad_(False)
    diffusion = GaussianDiffusion.from_config(cfg.diffusion).to(device)
    return model, weights, cfg, diffusion


def analyse(
    arms: Sequence[Arm],
    images: torch.Tensor,
    opts: JacobianOptions,
    *,
    config=None,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> JacobianResult:
    """Spectra, effective dimensionalities and eigenvectors for every arm's checkpoint."""
    if not arms:
        raise UserError("no model given: pass --arm LABEL=PATH[,PATH...] at least once")
    precheck(arms, images, opts, config=config)
    result = JacobianResult()
    setting = None
    method = None
    for index, arm in enumerate(arms):
        model, weights, cfg, diffusion = _load(arm, config, opts.use_ema, device)
        where = f"--arm {arm.label}={arm.path}"
        check_parameterisation(cfg.diffusion.model_mean_type, opts.quantity, where)
        check_timesteps(opts.timesteps, diffusion.timesteps)
        resolution = cfg.dataset.resolution
        this = Setting("gray32" if opts.gray32 else "full", resolution)
        if setting is None:
            setting = this
            check_inputs(opts, setting, images, resolution)
            method = resolve_method(opts.method, setting.dim)
            if method == "fast" and opts.rtol is None and opts.depth is None:
                raise UserError("--rtol none needs a --depth: the fast path must know when to stop")
        elif this.resolution != setting.resolution:
            raise UserError(
                f"{where} takes {resolution}×{resolution} images, the first model "
                f"{setting.resolution}×{setting.resolution}: "
                "compare models of one resolution"
            )
        result.models.append(
            {
                "index": index,
                "arm": arm.label,
                "checkpoint": arm.path,
                "epoch": weights.epoch,
                "step": weights.step,
                "weights": weights.which,
            }
        )
        clean = setting.clean(images.to(device))
        jobs = [(t, i) for t in opts.timesteps for i in range(len(images))]
        for t, i in tqdm(
            jobs, desc=f"{arm.label} ({index + 1}/{len(arms)})", disable=not progress, leave=False
        ):
            x = noisy_point(clean[i], i, t, diffusion, opts.seed)
            f = denoiser_map(model, diffusion, t, setting, quantity=opts.quantity)
            start = time.perf_counter()
            key = {
                "arm": arm.label,
                "model": index,
                "epoch": weights.epoch,
                "step": weights.step,
                "t": t,
                "image": i,
            }  # what names a summary row and each of its spectrum rows
            row = {**key, "method": method}
            op = Linearised(f, x, chunk=opts.chunk)
            if method == "exact":
                jac = jacobian_by_pullbacks(op)
                trip = exact_triplets(jac, opts.k)
                lam, sym = exact_symmetric(jac)
                del jac
            else:
                trip = top_singular(
                    op,
                    opts.k,
                    block=opts.block,
                    depth=fast_depth(opts, setting.dim),
                    rtol=opts.rtol,
                    seed=opts.seed,
                )
                if trip.converged is False and not trip.exact:
                    worst = float((trip.bound / trip.s.clamp_min(1e-30)).max())
                    warn(
                        f"{where}, t = {t}, image {i}: the fast path stopped after {trip.steps} "
                        f"step{'s' if trip.steps != 1 else ''} with a "
                        f"largest relative bound of {worst:.1e}, above --rtol {opts.rtol:g}; pass a larger "
                        "--depth, or --method exact"
                    )
                sym = hutchinson(op, opts.probes, seed=opts.seed + 1)
                op.release()
                lam = None
            row.update(
                trace=sym.trace,
                trace_se=sym.trace_se,
                frob_sym_sq=sym.frob_sym_sq,
                participation_ratio=sym.participation_ratio,
                asymmetry=sym.asymmetry,
                probes=sym.probes,
                sigma_1=float(trip.s[0]),
                sigma_k=float(trip.s[-1]),
                max_rel_bound=None
                if trip.bound is None
                else float((trip.bound / trip.s.clamp_min(1e-30)).max()),
                products=op.products,
                steps=trip.steps,
                converged=trip.converged,
                chunk_pull=op.chunks["pull"],
                chunk_push=op.chunks["push"],
                seconds=time.perf_counter() - start,
            )
            result.summary.append(row)
            for r in range(opts.k):
                result.spectra.append(
                    {
                        **key,
                        "rank": r + 1,
                        "sigma": float(trip.s[r]),
                        "bound": None if trip.bound is None else float(trip.bound[r]),
                        "eig_sym": None if lam is None else float(lam[r]),
                    }
                )
            if i == 0:
                result.vectors[(index, t)] = trip.u.T.detach().cpu().float()
        del model
    result.settings = {
        "setting": setting.name,
        "shape": list(setting.shape),
        "dim": setting.dim,
        "method": method,
        "quantity": opts.quantity,
        "timesteps": list(opts.timesteps),
        "k": opts.k,
        "num_images": len(images),
        "seed": opts.seed,
        "chunk": "auto" if opts.chunk is None else opts.chunk,
        "block": opts.block,
        "depth": opts.depth,
        "rtol": opts.rtol,
        "probes": opts.probes if method == "fast" else 0,
        "use_ema": opts.use_ema,
        "device": str(device),
    }
    return result


def match_vectors(
    reference: torch.Tensor, other: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``other``'s rows reordered and sign-flipped to match ``reference``'s rows (both (k, n),
    unit rows): the assignment maximising Σ|⟨ref_i, other_π(i)⟩| (Hungarian, scipy), then each
    matched row's sign made to give a non-negative inner product. Returns (matched rows,
    the permutation π, |⟨ref_i, other_π(i)⟩|)."""
    from scipy.optimize import linear_sum_assignment

    overlap = (reference.double() @ other.double().T).abs().numpy()
    _, perm = linear_sum_assignment(-overlap)
    perm_t = torch.as_tensor(perm)
    matched = other[perm_t].clone()
    signs = torch.sign((reference * matched).sum(1))
    signs[signs == 0] = 1
    matched *= signs[:, None]
    return matched, perm_t, torch.as_tensor(overlap[range(len(perm)), perm])


def sign_convention(vectors: torch.Tensor) -> torch.Tensor:
    """Each row flipped so that its largest-magnitude entry is positive (a singular vector's sign is
    arbitrary)."""
    idx = vectors.abs().argmax(1)
    signs = torch.sign(vectors[torch.arange(len(vectors)), idx])
    signs[signs == 0] = 1
    return vectors * signs[:, None]
