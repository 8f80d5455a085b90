"""The denoiser's Jacobian per model, t and checkpoint: its singular values (spectrum), the
effective dimensionality of its symmetric part, and its top singular vectors drawn side by side.

Models are arms: ``--arm LABEL=CHECKPOINT[,CHECKPOINT...]``, repeated, the spelling of
``trajectories`` (each label once; an arm's several checkpoints comma-separated, ordered as given
and plotted against their epoch)::

    ddpm-lens jacobian --arm baseline=chkpts/celeba/celeba_16.pt --arm C=chkpts/celeba64_c/celeba64_c_16.pt \\
        --config configs/celeba.json --t 100 500 900 --num_images 4 --k 80 --gray32
    ddpm-lens jacobian --arm base=src/ddpm_lens/demo/baseline.safetensors \\
        --arm curr=src/ddpm_lens/demo/curriculum.safetensors --t 500 --num_images 2 --k 20 --gray32

J is the Jacobian of the predicted clean image x̂₀ with respect to the noisy image in x₀'s units
(y = x_t/√ᾱ_t): I − √(1−ᾱ_t)·∂ε̂/∂x_t for ε-prediction models, √ᾱ_t·∂model/∂x_t for x₀-prediction
ones (--quantity study: the study's I − ∂ε̂/∂x_t). --gray32 is the study's setting (gray 32×32,
up-sampled to the model and back); without it, J is taken in full colour at the model's resolution.
--method exact forms J from n pull-backs (batched --chunk at a time; auto up to 4,096 dimensions);
fast finds the top --k singular triplets from Jacobian-vector products only (block Lanczos), each
with a residual bound, until every bound is at most --rtol (default 1e-3) times its value, and
estimates the trace by Hutchinson probes. Writes OUT/spectra.csv, summary.csv, jacobian.json,
plots/ and index.html.
"""

from __future__ import annotations

import argparse

from ddpm_lens.util.errors import UserError

HELP = "the denoiser's Jacobian: eigenvalue spectra, effective dimensionality, eigenvectors per model and t"


def parse_arms(specs: list[str]):
    """``--arm LABEL=PATH[,PATH...]`` values -> Arm per checkpoint, in order, through the
    trajectories' parser (:func:`ddpm_lens.analysis.study_arms.parse_arm`); a label given twice
    is refused, as there."""
    from ddpm_lens.analysis.jacobian_run import Arm
    from ddpm_lens.analysis.study_arms import parse_arm

    parsed = [parse_arm(spec) for spec in specs]
    labels = [label for label, _ in parsed]
    twice = sorted({label for label in labels if labels.count(label) > 1})
    if twice:
        raise UserError(
            f"arm label(s) given twice: {', '.join(twice)}; "
            "name an arm's checkpoints once, comma-separated: --arm LABEL=PATH,PATH"
        )
    return [Arm(label, path) for label, paths in parsed for path in paths]


def _or_word(cast, word: str, expected: str):
    """An argparse type: ``cast(text)``, or None for ``word``."""

    def parse(text: str):
        if text == word:
            return None
        try:
            return cast(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected} or {word}, got {text!r}") from None

    return parse


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ddpm_lens.cli._flags import add_ema_flags

    p.add_argument(
        "--arm",
        action="append",
        required=True,
        metavar="LABEL=PATH[,PATH...]",
        help="an arm: its label and checkpoint(s), comma-separated in order; repeat for more arms",
    )
    p.add_argument("--config", help="JSON config for checkpoints that carry none")
    p.add_argument(
        "--t", type=int, nargs="+", default=[500], metavar="T", help="timesteps (default: 500, the study's)"
    )
    p.add_argument("--dataset", help="dataset of the images (default: the first model's config's)")
    p.add_argument("--data_dir", help="folder of the dataset (celeba, folder)")
    p.add_argument(
        "--images",
        nargs="+",
        metavar="FILE",
        help="your own images instead of a dataset (at the model's resolution)",
    )
    p.add_argument(
        "--resize", action="store_true", help="centre-crop and resize --images of another size to the model's"
    )
    p.add_argument(
        "--num_images", type=int, default=4, help="images from the dataset's test split (default: 4)"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the noise at each t (default: 0)")
    p.add_argument(
        "--k", type=int, default=80, help="singular values and vectors kept (default: 80, the study's λ1…λ80)"
    )
    p.add_argument(
        "--method",
        default="auto",
        choices=("auto", "exact", "fast"),
        help="exact: the dense Jacobian; fast: top-k from products; auto (default): exact up to 4,096 dims",
    )
    p.add_argument(
        "--gray32",
        action="store_true",
        help="the study's setting: gray 32×32 (up-sampled to the model and back)",
    )
    p.add_argument(
        "--quantity",
        default="x0",
        choices=("x0", "study"),
        help="x0: J of x̂₀ w.r.t. x_t/√ᾱ_t (default); study: the study's I − ∂ε̂/∂x_t",
    )
    p.add_argument(
        "--chunk",
        type=_or_word(int, "auto", "a whole number"),
        default=None,
        metavar="N|auto",
        help="Jacobian-vector products batched together (memory and speed); auto (default): the "
        "fastest of 1, 2, 4, … 64, found by timing the first blocks, recorded in summary.csv",
    )
    p.add_argument(
        "--rtol",
        type=_or_word(float, "none", "a number such as 1e-3"),
        default=1e-3,
        metavar="RTOL|none",
        help="fast path: stop at the first step where every top-k bound is at most RTOL times its value "
        "(default: 1e-3; the bounds come free with each step); none: run --depth steps",
    )
    p.add_argument(
        "--depth",
        type=int,
        default=None,
        help="fast path: at most depth + 1 Krylov steps (default: until --rtol is met, the bases span every "
        "dimension (exact) or hold 4,096 directions)",
    )
    p.add_argument(
        "--block",
        type=int,
        default=10,
        help="fast path: products per Krylov step each way (default: 10; small blocks reach --rtol "
        "with fewer products in all, large ones batch more per call)",
    )
    p.add_argument(
        "--probes", type=int, default=16, help="fast path: Hutchinson probes of the trace (default: 16)"
    )
    add_ema_flags(p)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    p.add_argument("--output_dir", default="jacobian", help="output folder (default: jacobian)")
    p.add_argument("--no_progress", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    import sys

    from ddpm_lens.analysis.jacobian_run import JacobianOptions, analyse
    from ddpm_lens.core.checkpoint import load_weights, resolve_config
    from ddpm_lens.data.datasets import build_dataset, first_n, load_images, open_rgb
    from ddpm_lens.output.jacobian_report import write_jacobian
    from ddpm_lens.output.run_folder import check_output_dir
    from ddpm_lens.util.devices import pick_device

    arms = parse_arms(args.arm)
    if args.num_images < 1:
        raise UserError(f"--num_images must be at least 1, got {args.num_images}")
    first = resolve_config(args.config, load_weights(arms[0].path, use_ema=args.use_ema))
    resolution = first.dataset.resolution
    if args.images:
        if args.data_dir or args.dataset:
            raise UserError("--images replaces the dataset: drop --dataset/--data_dir, or drop --images")
        if not args.resize:
            for path in args.images:
                size = open_rgb(path).size
                if size != (resolution, resolution):
                    raise UserError(
                        f"image {path} is {size[0]}×{size[1]} but the model takes {resolution}×{resolution}: "
                        "resize it, or pass --resize to centre-crop and resize"
                    )
        images = load_images(args.images, resolution)
    else:
        dataset = build_dataset(
            args.dataset or first.dataset.name, root=args.data_dir, split="test", resolution=resolution
        )
        images = first_n(dataset, args.num_images)
    check_output_dir(args.output_dir)
    opts = JacobianOptions(
        timesteps=args.t,
        k=args.k,
        method=args.method,
        gray32=args.gray32,
        quantity=args.quantity,
        seed=args.seed,
        chunk=args.chunk,
        block=args.block,
        depth=args.depth,
        rtol=args.rtol,
        probes=args.probes,
        use_ema=args.use_ema,
    )
    result = analyse(
        arms, images, opts, config=args.config, device=pick_device(args.device), progress=not args.no_progress
    )
    written = write_jacobian(args.output_dir, result, argv=getattr(args, "argv", sys.argv[1:]))
    index = written["index.html"]
    print(
        f"wrote {len(written)} files ({result.settings['method']} path, {result.settings['dim']} dims); "
        f"open {index}"
    )
    return 0
