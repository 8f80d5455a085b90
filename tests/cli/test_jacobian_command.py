"""``ddpm-lens jacobian`` end to end on two tiny 8-px checkpoints, and its one-line errors."""

from __future__ import annotations

import csv

import pytest
import torch
from conftest import ROOT, perturb

from ddpm_lens.cli import main


def _checkpoint(path, *, seed: int, epoch: int = 3, mean_type: str = "eps"):
    from ddpm_lens.core.checkpoint import save_checkpoint
    from ddpm_lens.core.config import load_config, with_overrides
    from ddpm_lens.core.unet import build_unet

    cfg = with_overrides(
        load_config(ROOT / "configs/tiny.json"),
        {
            "dataset.resolution": 8,
            "model.ch_multipliers": [1, 2],
            "model.apply_attn": [False, True],
            "diffusion.model_mean_type": mean_type,
        },
    )
    torch.manual_seed(seed)
    model = perturb(build_unet(cfg.model), seed=seed)
    save_checkpoint({"model": model.state_dict(), "epoch": epoch, "config": cfg.to_dict()}, path)
    return path


@pytest.fixture(scope="module")
def faces(tmp_path_factory):
    """Two 8×8 pictures (synthetic faces start at 16 px)."""
    from PIL import Image

    d = tmp_path_factory.mktemp("faces")
    g = torch.Generator().manual_seed(0)
    paths = []
    for i in range(2):
        a = (torch.rand(8, 8, 3, generator=g) * 255).to(torch.uint8).numpy()
        Image.fromarray(a).save(d / f"{i}.png")
        paths.append(str(d / f"{i}.png"))
    return paths


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    d = tmp_path_factory.mktemp("jac")
    return {
        "a1": _checkpoint(d / "a_1.pt", seed=0, epoch=1),
        "a2": _checkpoint(d / "a_2.pt", seed=1, epoch=2),
        "b": _checkpoint(d / "b_2.pt", seed=2, epoch=2),
        "mean": _checkpoint(d / "m.pt", seed=3, mean_type="mean"),
    }


def _rows(path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _run(args, out):
    return main(["jacobian", *args, "--output_dir", str(out), "--no_progress", "--device", "cpu"])


@pytest.mark.slow
def test_two_arms_exact_writes_spectra_effdim_vectors_and_page(tmp_path, ckpts, faces, one_thread):
    out = tmp_path / "out"
    code = _run(
        [
            "--arm",
            f"A={ckpts['a1']},{ckpts['a2']}",
            "--arm",
            f"B={ckpts['b']}",
            "--t",
            "100",
            "500",
            "--k",
            "12",
            "--images",
            *faces,
        ],
        out,
    )
    assert code == 0
    spectra = _rows(out / "spectra.csv")
    assert len(spectra) == 3 * 2 * 2 * 12  # models × t × images × ranks
    summary = _rows(out / "summary.csv")
    assert {r["method"] for r in summary} == {"exact"}
    for r in summary:
        assert 0 < float(r["participation_ratio"]) <= 192
    # the spectrum is descending and the models differ
    s = [float(r["sigma"]) for r in spectra if r["model"] == "0" and r["t"] == "500" and r["image"] == "0"]
    assert s == sorted(s, reverse=True)
    tr = {r["model"]: float(r["trace"]) for r in summary if r["t"] == "500" and r["image"] == "0"}
    assert len(set(tr.values())) == 3
    for name in (
        "plots/spectrum_t100.png",
        "plots/spectrum_t500.png",
        "plots/effdim_vs_t.png",
        "plots/effdim_vs_checkpoint.png",
        "plots/eigenvectors_t500.png",
        "index.html",
    ):
        assert (out / name).stat().st_size > 0, name
    page = (out / "index.html").read_text()
    assert "participation ratio" in page and "spectrum_t500.png" in page


def test_fast_path_in_the_gray_setting_reports_bounds(tmp_path, ckpts, faces, one_thread):
    out = tmp_path / "fast"
    code = _run(
        [
            "--arm",
            f"A={ckpts['a1']}",
            "--arm",
            f"B={ckpts['b']}",
            "--t",
            "500",
            "--images",
            faces[0],
            "--k",
            "6",
            "--method",
            "fast",
            "--gray32",
            "--probes",
            "4",
            "--chunk",
            "64",
        ],
        out,
    )
    assert code == 0
    spectra = _rows(out / "spectra.csv")
    assert all(float(r["bound"]) >= 0 for r in spectra) and all(r["eig_sym"] == "" for r in spectra)
    summary = _rows(out / "summary.csv")
    assert {r["method"] for r in summary} == {"fast"} and all(float(r["trace_se"]) > 0 for r in summary)


def test_rtol_runs_until_every_bound_is_within_it_and_says_so(tmp_path, ckpts, faces, one_thread):
    out = tmp_path / "rtol"
    args = ["--arm", f"A={ckpts['a1']}", "--t", "500", "--images", faces[0], "--k", "4"]
    code = _run([*args, "--method", "fast", "--gray32", "--probes", "4", "--rtol", "1e-3"], out)
    assert code == 0
    summary = _rows(out / "summary.csv")
    assert [r["converged"] for r in summary] == ["True"]
    assert float(summary[0]["max_rel_bound"]) <= 1e-3
    assert (
        "block Lanczos, 10 columns per step, until every bound is at most 0.001 × its σ"
        in (out / "index.html").read_text()
    )
    exact = tmp_path / "exact"
    assert _run([*args, "--method", "exact", "--gray32"], exact) == 0
    fast = [float(r["sigma"]) for r in _rows(out / "spectra.csv")]
    dense = [float(r["sigma"]) for r in _rows(exact / "spectra.csv")]
    assert fast == pytest.approx(dense, rel=1e-3)
    row = _rows(exact / "summary.csv")[0]
    assert int(row["chunk_pull"]) in {1, 2, 4, 8, 16, 32, 64} and row["chunk_push"] == ""  # auto, recorded
    assert int(row["products"]) == 1024 and row["steps"] == "0"


def test_a_fast_run_stopped_short_of_rtol_warns_and_says_so_in_the_summary(tmp_path, ckpts, faces, capsys):
    out = tmp_path / "short"
    args = ["--arm", f"A={ckpts['a1']}", "--t", "500", "--images", faces[0], "--k", "4", "--gray32"]
    assert _run([*args, "--method", "fast", "--probes", "4", "--depth", "0", "--rtol", "1e-6"], out) == 0
    row = _rows(out / "summary.csv")[0]
    assert row["converged"] == "False" and row["steps"] == "1" and float(row["max_rel_bound"]) > 1e-6
    warnings = [line for line in capsys.readouterr().err.splitlines() if "fast path stopped" in line]
    assert len(warnings) == 1 and "after 1 step with" in warnings[0] and "above --rtol 1e-06" in warnings[0]


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--t", "1000"], "--t 1000 is outside [0, 1000)"),
        (["--k", "193"], "--k 193 is outside 1..192"),
        (["--arm", "nolabel"], "is not LABEL=PATH[,PATH...]"),
        (["--arm", "A={mean}"], "arm label(s) given twice: A"),
        (["--quantity", "study", "--arm", "M={mean}"], "eps- and x_0-prediction models only"),
        (["--images", "{img}"], "is 16×16 but the model takes 8×8"),
        (["--method", "fast", "--rtol", "2"], "--rtol must be between 0 and 1"),
        (["--chunk", "0"], "--chunk must be at least 1, got 0"),
        (["--method", "fast", "--rtol", "none"], "--rtol none needs a --depth"),
        (["--block", "0"], "--block must be at least 1, got 0"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, ckpts, faces, capsys, extra, message):
    from PIL import Image

    img = tmp_path / "face.png"
    Image.new("RGB", (16, 16), "gray").save(img)
    extra = [e.format(mean=ckpts["mean"], img=img) for e in extra]
    images = [] if "--images" in extra else ["--images", faces[0]]
    out = tmp_path / "out"
    code = _run(["--arm", f"A={ckpts['a1']}", *images, *extra], out)
    err = capsys.readouterr().err
    assert code == 2
    lines = [line for line in err.strip().splitlines() if not line.startswith("warning:")]
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0]
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.slow  # 6.5 s on 2 busy cores: two exact 768-dim Jacobians, autograd's, and the plots
def test_uvit_checkpoint_folders_give_the_exact_spectrum_of_their_denoiser(tmp_path, face_folder, one_thread):
    """Two U-ViT ckpts/<step>.ckpt/ folders of one arm with their .py config: spectra.csv holds the
    singular values of the Jacobian that autograd forms on its own (EMA weights, seed 0's noise at
    t=500), and each checkpoint is placed by its step."""
    from conftest import UVIT_STUDY_CONFIG, tiny_uvit

    from ddpm_lens.analysis.jacobian_map import Setting, denoiser_map, noisy_point
    from ddpm_lens.core.checkpoint import load_model
    from ddpm_lens.data.datasets import load_images

    config = tmp_path / "celeba16_uvit.py"
    config.write_text(UVIT_STUDY_CONFIG)
    for k, step in enumerate((10, 20)):
        folder = tmp_path / "ckpts" / f"{step}.ckpt"
        folder.mkdir(parents=True)
        torch.save(tiny_uvit(2 * k).state_dict(), folder / "nnet.pth")
        torch.save(tiny_uvit(2 * k + 1).state_dict(), folder / "nnet_ema.pth")
    image = str(sorted(face_folder.iterdir())[0])
    out = tmp_path / "out"
    ckpts = [tmp_path / "ckpts" / f"{s}.ckpt" for s in (10, 20)]
    arms = ["--arm", "U=" + ",".join(map(str, ckpts))]  # one arm, its checkpoints in training order
    args = [*arms, "--config", str(config), "--t", "500", "--k", "6", "--method", "exact", "--chunk", "256"]
    args += ["--images", image]
    assert _run(args, out) == 0
    spectra = _rows(out / "spectra.csv")
    summary = _rows(out / "summary.csv")
    assert [(r["step"], r["epoch"], r["method"]) for r in summary] == [
        ("10", "", "exact"),
        ("20", "", "exact"),
    ]
    assert (out / "plots" / "effdim_vs_checkpoint.png").stat().st_size > 0

    model, diffusion, _ = load_model(config, ckpts[1])  # EMA weights, as the command's default
    x = noisy_point(load_images([image], 16)[0], 0, 500, diffusion, seed=0)
    f = denoiser_map(model.requires_grad_(False), diffusion, 500, Setting("full", 16))
    dense = torch.autograd.functional.jacobian(f, x, vectorize=True)
    expected = torch.linalg.svdvals(dense.double())[:6]
    got = torch.tensor([float(r["sigma"]) for r in spectra if r["model"] == "1"], dtype=torch.float64)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-6)
    other = [float(r["sigma"]) for r in spectra if r["model"] == "0"]
    assert abs(other[0] - float(got[0])) > 1e-3  # the steps' models differ
