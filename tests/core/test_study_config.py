"""The study's config schema (sun-messi/curriculum-sparse-reg), read as its files are written.

Fixtures follow the facts of its configs: a `//` header block before the opening brace, trailing
`//` comments, `_comment` keys (its README's examples), disabled sections in the baseline, nine
stages summing to 20 epochs with per-stage `sparsity` (CS) or `lambda` (CR).
"""

import json
from pathlib import Path

import pytest
import torch

from ddpm_lens.core.config import load_config, save_config, strip_line_comments, with_overrides
from ddpm_lens.core.unet import build_unet
from ddpm_lens.util.errors import UserError

ROOT = Path(__file__).resolve().parents[2]

HEADER = """// ============================================================
// CelebA 64x64 - Curriculum + Sparsity (CS) Mode
// ============================================================
//
// Usage:
//   python train_curriculum.py --config-path configs/x.json --num-gpus 6 --distributed --rigid-launch
//
// | Stage | t_range    | epochs | 说明 |
// |   1   | [0.5, 1.0] |   1    | coarse |
// ============================================================
"""

MODEL = {
    "in_channels": 3,
    "hid_channels": 32,
    "ch_multipliers": [1, 1, 2, 2],
    "num_res_blocks": 1,
    "apply_attn": [False, False, True, False],
    "drop_rate": 0.0,
}
TRAIN = {"lr": 2e-5, "batch_size": 128, "grad_norm": 1.0, "epochs": 100, "warmup": 5000, "use_ema": True,
         "ema_decay": 0.9999, "num_samples": 12, "image_intv": 1, "chkpt_intv": 1}  # fmt: skip
# the study's nine stages: (t_min, epochs, sparsity, lambda)
STAGES = [
    (0.3, 1, 0.8, 3e-5),
    (0.2, 1, 0.8, 3e-5),
    (0.15, 1, 0.7, 2.4e-5),
    (0.1, 1, 0.6, 1.8e-5),
    (0.07, 1, 0.5, 1.2e-5),
    (0.05, 1, 0.4, 8e-6),
    (0.03, 1, 0.25, 4e-6),
    (0.01, 1, 0.1, 1e-6),
    (0.0, 12, 0.0, 0.0),
]


def study_config(mode: str) -> dict:
    """One of the study's four configs (values as in its repository), as a dict."""
    stages = []
    for i, (t_min, epochs, sparsity, lam) in enumerate(STAGES):
        s = {"t_min": t_min, "t_max": 1.0, "epochs": epochs}
        s.update({"cs": {"sparsity": sparsity}, "cr": {"lambda": lam}}.get(mode, {}))
        stages.append({**s, "name": f"stage{i + 1}"})
    return {
        "dataset": "celeba",
        "diffusion": {
            "timesteps": 1000,
            "beta_start": 0.0001,
            "beta_end": 0.02,
            "beta_schedule": "linear",
            "model_mean_type": "eps",
            "model_var_type": "fixed-small",
            "loss_type": "mse",
        },  # fmt: skip
        "model": dict(MODEL),
        "train": dict(TRAIN),
        "curriculum": {"enabled": False} if mode == "baseline" else {"enabled": True, "stages": stages},
        "sparsity": {"enabled": mode == "cs", "initial_sparsity": 0.8, "regrowth_method": "gradient"},
        "regularization": {"enabled": mode == "cr", "lambda_max": 0.00003},
    }


def write(tmp_path, data: dict, name="x.json", header=HEADER) -> Path:
    p = tmp_path / name
    p.write_text(header + json.dumps(data, indent=2))
    return p


@pytest.mark.parametrize("mode", ["baseline", "c", "cs", "cr"])
def test_each_mode_parses_to_its_schedule(tmp_path, mode):
    cfg = load_config(write(tmp_path, study_config(mode)))
    assert cfg.dataset.name == "celeba" and cfg.dataset.resolution == 64 and cfg.train.num_samples == 12
    assert (cfg.sparsity is not None, cfg.regularization is not None) == (mode == "cs", mode == "cr")
    if mode == "baseline":
        assert cfg.curriculum is None
        return
    c = cfg.curriculum
    assert (c.kind, c.mode, c.total_epochs, len(c.stages)) == ("stages", "hard", 20, 9)
    assert [s.t_min for s in c.stages] == [s[0] for s in STAGES]
    assert [s.epochs for s in c.stages] == [s[1] for s in STAGES]
    assert c.stage_name(2) == "stage3"
    assert [s.sparsity for s in c.stages] == ([s[2] for s in STAGES] if mode == "cs" else [None] * 9)
    assert [s.lam for s in c.stages] == ([s[3] for s in STAGES] if mode == "cr" else [None] * 9)
    if mode == "cs":
        assert (cfg.sparsity.initial_sparsity, cfg.sparsity.regrowth_method) == (0.8, "gradient")
    if mode == "cr":
        assert cfg.regularization.lambda_max == 3e-5


def test_shipped_configs_carry_the_studys_values():
    base = load_config(ROOT / "configs/celeba.json")
    assert base.curriculum is None and base.sparsity is None and base.regularization is None
    assert (base.train.epochs, base.train.num_samples, base.train.lr) == (20, 12, 2e-5)
    for name in ("celeba64_c", "celeba64_cs", "celeba64_cr"):
        cfg = load_config(ROOT / f"configs/{name}.json")
        assert cfg.model == base.model and cfg.diffusion == base.diffusion and cfg.train.epochs == 100
        c = cfg.curriculum
        assert [(s.t_min, s.t_max, s.epochs) for s in c.stages] == [(t, 1.0, e) for t, e, _, _ in STAGES]
        assert c.stage_name(0) == "stage1_coarse" and c.stage_name(8) == "stage9_finest"
    cs = load_config(ROOT / "configs/celeba64_cs.json")
    assert [s.sparsity for s in cs.curriculum.stages] == [s[2] for s in STAGES] and cs.regularization is None
    cr = load_config(ROOT / "configs/celeba64_cr.json")
    assert [s.lam for s in cr.curriculum.stages] == [s[3] for s in STAGES] and cr.sparsity is None


@pytest.mark.parametrize("name", ["tiny_study", "tiny_study_c", "tiny_cs", "tiny_cr"])
def test_tiny_study_schema_configs_pass_their_stages_in_a_few_steps(name):
    cfg = load_config(ROOT / f"configs/{name}.json")
    assert cfg.dataset.max_images == 64 and cfg.train.batch_size == 16  # 4 steps per epoch
    assert (cfg.curriculum is None) == (name == "tiny_study")
    assert (cfg.sparsity is not None, cfg.regularization is not None) == (
        name == "tiny_cs",
        name == "tiny_cr",
    )


def test_comments_private_keys_and_defaults(tmp_path):
    data = study_config("c")
    data["_comment"] = "CS mode: curriculum + sparsity"
    data["_usage"] = "python train_curriculum.py --config-path configs/x.json"
    data["curriculum"]["_comment"] = "stages"
    data["curriculum"]["stages"] = [{"_comment": "first", "name": "a"}, {"t_min": 0.5, "t_max": 0.5}]
    text = HEADER + json.dumps(data, indent=2).replace('"epochs": 100,', '"epochs": 100,  // overridden')
    p = tmp_path / "x.json"
    p.write_text(text)
    c = load_config(p).curriculum
    first, second = c.stages
    # a stage without keys: t in [0, 1), 10 epochs (the study's default), alpha = beta = 1
    assert (first.t_min, first.t_max, first.epochs, first.alpha, first.beta) == (0.0, 1.0, 10, 1.0, 1.0)
    assert c.stage_name(0) == "a" and c.stage_name(1) == "stage_2" and c.total_epochs == 20
    assert load_config(p).train.epochs == 100


@pytest.mark.parametrize("curriculum", [{"enabled": False, "stages": [{"t_min": 0.3}]}, {"enabled": False}])
def test_a_disabled_curriculum_is_a_baseline(tmp_path, curriculum):
    data = {**study_config("c"), "curriculum": curriculum}
    assert load_config(write(tmp_path, data)).curriculum is None


def test_an_enabled_curriculum_without_stages_is_refused(tmp_path):
    # it trained a baseline without a word
    data = {**study_config("c"), "curriculum": {"enabled": True, "stages": []}}
    with pytest.raises(UserError, match=r"'curriculum.stages' is empty but 'curriculum.enabled' is true"):
        load_config(write(tmp_path, data))


def test_a_stage_whose_t_min_exceeds_its_t_max_is_refused_naming_it(tmp_path):
    # it trained without a word (on which range?)
    data = study_config("c")
    data["curriculum"]["stages"][1].update(t_min=0.8, t_max=0.3)
    with pytest.raises(UserError, match=r"'curriculum.stages\[1\].t_min' \(0.8\) is above its t_max \(0.3\)"):
        load_config(write(tmp_path, data))


def test_stages_without_enabled_train_a_baseline_with_a_warning(tmp_path, capsys):
    data = {**study_config("c"), "curriculum": {"stages": [{"t_min": 0.3, "epochs": 1}]}}
    assert load_config(write(tmp_path, data)).curriculum is None
    assert 'add "enabled": true' in capsys.readouterr().err


def test_soft_mode_and_num_samples_zero(tmp_path):
    data = study_config("c")
    data["curriculum"] = {
        "enabled": True,
        "mode": "soft",
        "stages": [{"alpha": 5.0, "beta": 1.5, "epochs": 2}],
    }
    data["train"] = {**TRAIN, "num_samples": 0}  # ddpm-torch: no sample grids
    cfg = load_config(write(tmp_path, data))
    assert (
        cfg.curriculum.mode == "soft" and cfg.curriculum.stages[0].alpha == 5.0 and cfg.train.num_samples == 0
    )


def test_round_trip_keeps_the_studys_form(tmp_path):
    cfg = load_config(write(tmp_path, study_config("cs")))
    out = tmp_path / "saved.json"
    save_config(cfg, out)
    saved = json.loads(out.read_text())
    assert saved["curriculum"]["enabled"] is True and saved["curriculum"]["stages"][2]["sparsity"] == 0.7
    assert saved["sparsity"] == {"enabled": True, "initial_sparsity": 0.8, "regrowth_method": "gradient"}
    again = load_config(out)
    assert again == cfg and again.to_dict() == cfg.to_dict()
    assert with_overrides(cfg, {"train.lr": 1e-4}).curriculum == cfg.curriculum


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("curriculum", "stages", 2, "t_min"), "0.15", r"'curriculum.stages\[2\].t_min' must be a number"),
        (("curriculum", "stages", 0, "epochs"), 1.5, r"'curriculum.stages\[0\].epochs' must be an integer"),
        (("curriculum", "stages", 1, "tmin"), 0.2, r"unknown key 'curriculum.stages\[1\].tmin'"),
        (("curriculum", "stages", 1, "t_max"), 1.5, r"'curriculum.stages\[1\].t_max' must be a fraction"),
        (
            ("curriculum", "stages", 3, "sparsity"),
            1.2,
            r"'curriculum.stages\[3\].sparsity' must be in \[0, 1\]",
        ),
        (("curriculum", "stages", 3, "lambda"), -1e-5, r"'curriculum.stages\[3\].lambda' must be >= 0"),
        (("curriculum", "stages", 0, "name"), 7, r"'curriculum.stages\[0\].name' must be a string"),
        (("curriculum", "enabled"), "yes", r"'curriculum.enabled' must be true or false"),
        (("curriculum", "mode"), "Soft", r"'curriculum.mode' is \"Soft\"; valid: hard, soft"),
        (("curriculum", "kind"), "clusters", r"'curriculum.kind' does not apply to the study's staged form"),
        (("curriculum", "stages"), {"t_min": 0.3}, r"'curriculum.stages' must be a list"),
        (("sparsity", "enabled"), 1, r"'sparsity.enabled' must be true or false"),
        (("sparsity", "regrowth_method"), "magnitude", r"'sparsity.regrowth_method' is \"magnitude\""),
        (("sparsity", "initial_sparsity"), 1.0, r"'sparsity.initial_sparsity' must be in \[0, 1\)"),
        (("sparsity", "initial_sparsity"), "0.8", r"'sparsity.initial_sparsity' must be a number"),
        (("regularization", "lamda_max"), 1e-5, r"unknown key 'regularization.lamda_max'"),
        (("regularization", "lambda_max"), None, r"'regularization.lambda_max' must be"),
        (("train", "num_samples"), -1, r"'train.num_samples' must be >= 0"),
    ],
)
def test_a_wrong_type_or_key_is_one_line_naming_file_and_key(tmp_path, path, value, message):
    data = study_config("cs")
    target = data
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    p = write(tmp_path, data)
    with pytest.raises(UserError, match=message) as info:
        load_config(p)
    assert str(p) in str(info.value) and "\n" not in str(info.value)


def test_modes_need_the_staged_curriculum(tmp_path):
    data = {**study_config("cs"), "curriculum": {"kind": "clusters", "num_clusters": 4}}
    with pytest.raises(UserError, match="'sparsity.enabled' follows the study's staged curriculum"):
        load_config(write(tmp_path, data))


# ---- the study's own 13 configs and its run folders' config.json (tests/fixtures/README.md) -----

FIXTURES = ROOT / "tests" / "fixtures"
STUDY_CONFIGS = sorted((FIXTURES / "study_configs").glob("*.json"))
# the study's dataset classes' resolutions (ddpm_torch/datasets.py)
STUDY_RESOLUTION = {"celeba": 64, "celeba32": 32, "cifar10": 32, "celeba_hq": 256}


def _raw(path):
    return json.loads(strip_line_comments(path.read_text()))


def test_all_thirteen_study_configs_are_shipped():
    assert len(STUDY_CONFIGS) == 13


@pytest.mark.parametrize("path", STUDY_CONFIGS, ids=lambda p: p.stem)
def test_every_study_config_loads_with_its_values(path):
    raw = _raw(path)
    cfg = load_config(path)
    assert cfg.dataset.name == raw["dataset"]
    assert cfg.dataset.resolution == STUDY_RESOLUTION[raw["dataset"]]
    for key in ("hid_channels", "ch_multipliers", "num_res_blocks", "apply_attn", "drop_rate"):
        value = getattr(cfg.model, key)
        assert (list(value) if isinstance(value, tuple) else value) == raw["model"][key], key
    for key in ("lr", "batch_size", "epochs", "warmup", "ema_decay"):
        assert getattr(cfg.train, key) == raw["train"][key]
    assert cfg.diffusion.model_var_type == raw["diffusion"]["model_var_type"]
    cur = raw.get("curriculum", {})
    assert (cfg.curriculum is not None) == bool(cur.get("enabled") and cur.get("stages"))
    if cfg.curriculum is not None:
        assert [s.t_min for s in cfg.curriculum.stages] == [s["t_min"] for s in cur["stages"]]
    assert (cfg.sparsity is not None) == raw.get("sparsity", {}).get("enabled", False)
    assert (cfg.regularization is not None) == raw.get("regularization", {}).get("enabled", False)
    # the model the config describes builds, and takes inputs at the config's resolution
    with torch.device("meta"):
        model = build_unet(cfg.model, sparsity=cfg.sparsity)
        r = cfg.dataset.resolution
        out = model(torch.zeros(1, 3, r, r), torch.zeros(1, dtype=torch.long))
    assert out.shape == (1, 3, r, r)


def test_celeba32_configs_are_32_pixels():
    """They used to get CelebA-64's 64x64 inputs: the dataset name fixes the resolution."""
    for path in STUDY_CONFIGS:
        if path.stem.startswith("celeba32"):
            assert load_config(path).dataset.resolution == 32, path.name


@pytest.mark.parametrize("run", ["study_run_celeba", "study_run_celeba64_cs"])
def test_study_run_folder_config_json_loads(run):
    """The config.json the study's trainer writes beside its checkpoints: every key it writes."""
    path = FIXTURES / run / "config.json"
    raw = json.loads(path.read_text())
    cfg = load_config(path)
    assert cfg.train.seed == raw["seed"] == 1234
    assert (cfg.train.beta1, cfg.train.beta2) == (raw["train"]["beta1"], raw["train"]["beta2"])
    assert cfg.train.chkpt_intv == raw["train"]["chkpt_intv"]
    assert cfg.model.out_channels == raw["model"]["out_channels"]
    assert (cfg.curriculum is None) == (raw["curriculum"] == {"stages": []})
    assert (cfg.sparsity is not None) == raw["sparsity"]["enabled"]
    # the same recipe as the shipped config it was written from
    shipped = load_config(FIXTURES / "study_configs" / f"{run.removeprefix('study_run_')}.json")
    assert (cfg.model, cfg.curriculum, cfg.sparsity, cfg.regularization) == (
        shipped.model.__class__(**{**shipped.model.__dict__, "out_channels": 3}),
        shipped.curriculum,
        shipped.sparsity,
        shipped.regularization,
    )


def _run_config(tmp_path, **changes):
    raw = json.loads((FIXTURES / "study_run_celeba" / "config.json").read_text())
    for dotted, value in changes.items():
        *section, key = dotted.split(".")
        (raw[section[0]] if section else raw)[key] = value
    path = tmp_path / "config.json"
    path.write_text(json.dumps(raw))
    return path


def test_block_size_other_than_one_is_refused(tmp_path):
    with pytest.raises(UserError, match=r"model\.block_size' is 2; only 1"):
        load_config(_run_config(tmp_path, **{"model.block_size": 2}))


def test_top_level_seed_conflicting_with_train_seed_is_refused(tmp_path):
    with pytest.raises(UserError, match="seed"):
        load_config(_run_config(tmp_path, **{"train.seed": 7}))


def test_adam_betas_reach_the_optimizer(tmp_path):
    from ddpm_lens.train.distributed import init_distributed
    from ddpm_lens.train.trainer import Trainer

    tiny = load_config(ROOT / "configs" / "tiny.json")
    cfg = with_overrides(tiny, {"train.beta1": 0.5, "train.beta2": 0.9})
    trainer = Trainer(cfg, run_dir=tmp_path / "run", dist=init_distributed("cpu"))
    assert trainer.optimizer.param_groups[0]["betas"] == (0.5, 0.9)
