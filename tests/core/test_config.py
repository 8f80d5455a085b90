import json
from pathlib import Path

import pytest

from ddpm_lens.core.config import (
    config_from_dict,
    load_config,
    save_config,
    strip_line_comments,
    with_overrides,
)
from ddpm_lens.util.errors import UserError

ROOT = Path(__file__).resolve().parents[2]


def test_shipped_celeba_config_has_the_study_settings():
    cfg = load_config(ROOT / "configs/celeba.json")
    m, d, t = cfg.model, cfg.diffusion, cfg.train
    assert (m.hid_channels, m.ch_multipliers, m.num_res_blocks) == (128, (1, 2, 2, 2), 2)
    assert m.apply_attn == (False, False, True, False)
    assert (d.timesteps, d.beta_schedule, d.beta_start, d.beta_end) == (1000, "linear", 1e-4, 0.02)
    assert (d.model_mean_type, d.model_var_type, d.loss_type) == ("eps", "fixed-small", "mse")
    assert (t.lr, t.batch_size, t.warmup, t.grad_norm, t.ema_decay) == (2e-5, 128, 5000, 1.0, 0.9999)
    assert cfg.curriculum is None and cfg.sparsity is None and cfg.regularization is None
    assert cfg.name == "celeba" and (t.epochs, t.num_samples) == (20, 12)
    cur = load_config(ROOT / "configs/celeba64_c.json")  # the study's staged curriculum
    assert (
        cur.curriculum is not None and cur.curriculum.kind == "stages" and cur.curriculum.total_epochs == 20
    )
    assert cur.model == cfg.model and cur.diffusion == cfg.diffusion  # only the curriculum differs


def test_reads_ddpm_torch_files_as_they_are(tmp_path):
    # ddpm-torch HEAD writes "dataset" as a string; older files call the model section "denoise".
    old = {"dataset": "celeba", "denoise": {"hid_channels": 64}, "train": {"lr": 1e-4}, "diffusion": {}}
    p = tmp_path / "old.json"
    p.write_text("// a comment line\n" + json.dumps(old) + "  // trailing comment\n")
    cfg = load_config(p)
    assert cfg.model.hid_channels == 64 and cfg.dataset.name == "celeba" and cfg.dataset.resolution == 64


def test_comments_inside_strings_survive():
    assert strip_line_comments('{"root": "http://x//y"} // c') == '{"root": "http://x//y"} '


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"model": {"hid_chanels": 64}}, r"unknown key 'model.hid_chanels'"),
        ({"modle": {}}, r"unknown section 'modle'"),
        ({"model": {"hid_channels": "128"}}, r"'model.hid_channels' must be an integer"),
        ({"model": {"hid_channels": 100}}, r"'model.hid_channels' must be a positive multiple of 32"),
        ({"model": {"apply_attn": [True]}}, r"'model.apply_attn' must have one entry per level"),
        ({"train": {"use_ema": 1}}, r"'train.use_ema' must be true or false"),
        ({"diffusion": {"model_var_type": "learned"}}, r"'diffusion.model_var_type' is \"learned\"; valid"),
        ({"dataset": {"resolution": 60}}, r"'dataset.resolution' must be divisible by 8"),
        ({"curriculum": {"kind": "tmax", "num_clusters": 3}}, r"'curriculum.num_clusters' does not apply"),
        ({"curriculum": {"kind": "tmax", "t_max": [500, 1000], "boundaries": []}}, r"curriculum.boundaries"),
        ({"model": {}, "denoise": {}}, r"both 'model' and its old name 'denoise'"),
    ],
)
def test_bad_values_name_file_and_key(data, message, tmp_path):
    p = tmp_path / "bad.json"
    p.write_text(json.dumps(data))
    with pytest.raises(UserError, match=message) as info:
        load_config(p)
    assert str(p) in str(info.value) and "\n" not in str(info.value)


def test_unreadable_files(tmp_path):
    with pytest.raises(UserError, match="not found"):
        load_config(tmp_path / "missing.json")
    p = tmp_path / "broken.json"
    p.write_text('{"model": {')
    with pytest.raises(UserError, match="not valid JSON at line 1"):
        load_config(p)


def test_round_trip_and_overrides(tmp_path):
    cfg = load_config(ROOT / "configs/celeba64_c.json")
    out = tmp_path / "saved.json"
    save_config(cfg, out)
    again = load_config(out)
    assert again.to_dict() == cfg.to_dict()
    changed = with_overrides(cfg, {"train.lr": 1e-3, "train.batch_size": None})
    assert changed.train.lr == 1e-3 and changed.train.batch_size == cfg.train.batch_size
    with pytest.raises(UserError, match="'train.lr' must be positive"):
        with_overrides(cfg, {"train.lr": -1.0})


def test_config_from_dict_defaults():
    cfg = config_from_dict({})
    assert cfg.model.hid_channels == 128 and cfg.curriculum is None
