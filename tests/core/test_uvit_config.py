"""The study's U-ViT .py configs, read with ast and never run (core/uvit_config.py)."""

import pytest
from conftest import UVIT_STUDY_CONFIG as STUDY_CONFIG

from ddpm_lens.core.config import load_config
from ddpm_lens.core.uvit import UViTConfig
from ddpm_lens.core.uvit_config import read_study_config
from ddpm_lens.util.errors import UserError


def write(tmp_path, text, name="cfg.py"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_the_studys_form_reads_as_the_dict_get_config_returns(tmp_path):
    raw = read_study_config(write(tmp_path, STUDY_CONFIG))
    assert raw["train"] == {"n_steps": 40, "batch_size": 6, "mode": "uncond"}  # sum(...) and 2*3
    assert raw["optimizer"]["betas"] == (0.99, 0.99)
    assert raw["curriculum"]["stages"][1] == {"t_min": 0.0, "t_max": 1.0, "n_steps": 30, "name": "b"}
    cfg = load_config(write(tmp_path, STUDY_CONFIG, "celeba16_uvit.py"))
    assert cfg.model == UViTConfig(
        img_size=16, patch_size=4, embed_dim=32, depth=4, num_heads=4, mlp_ratio=2.0
    )
    assert (cfg.train.max_steps, cfg.train.batch_size, cfg.train.lr, cfg.train.warmup) == (40, 6, 2e-4, 50)
    assert (cfg.train.seed, cfg.train.ema_decay, cfg.dataset.name, cfg.dataset.resolution) == (
        7,
        0.9999,
        "celeba",
        16,
    )
    assert cfg.diffusion.model_mean_type == "eps" and cfg.diffusion.timesteps == 1000
    assert cfg.name == "celeba16_uvit"


@pytest.mark.parametrize(
    "line, what",
    [
        ("    config.seed = int('7')", "a function call"),
        ("    import os", "a statement that is not an assignment"),
        ("    config.seed = __import__('os').getpid()", "a function call"),
        ("    config.seed = [x for x in range(3)]", "a ListComp expression"),
        ("    config.seed = open('/etc/passwd').read()", "a function call"),
        ("    config.seed = undefined_name", "the name 'undefined_name'"),
        ("    config.seed = 10 ** 100000", "a power with an exponent over 64"),
    ],
)
def test_anything_but_literals_is_refused_naming_the_line(tmp_path, line, what):
    text = STUDY_CONFIG.replace("    config.seed = 7", line)
    lineno = text.splitlines().index(line) + 1
    with pytest.raises(UserError, match=rf"line {lineno}: {what}") as err:
        load_config(write(tmp_path, text))
    assert "without running them" in str(err.value) and "\n" not in str(err.value)


def test_module_level_code_and_other_helpers_are_refused(tmp_path):
    with pytest.raises(UserError, match=r"line 1: an import other than 'import ml_collections'"):
        load_config(write(tmp_path, "import os\n" + STUDY_CONFIG))
    text = STUDY_CONFIG.replace(
        "    return ml_collections.ConfigDict(initial_dictionary=kwargs)", "    return print(kwargs)"
    )
    lineno = text.splitlines().index("def d(**kwargs):") + 1
    with pytest.raises(UserError, match=rf"line {lineno}: a statement that is not a literal config"):
        load_config(write(tmp_path, text))
    with pytest.raises(UserError, match=r"line 1: a statement that is not a literal config"):
        load_config(write(tmp_path, "print('hi')\n" + STUDY_CONFIG))


def test_a_config_without_a_uvit_nnet_is_refused(tmp_path):
    with pytest.raises(UserError, match="'config.nnet' must be d\\(name='uvit'"):
        load_config(write(tmp_path, STUDY_CONFIG.replace("name='uvit'", "name='uvit_t2i'")))
    with pytest.raises(UserError, match="'model.embed_dim' must be divisible by num_heads 5"):
        load_config(write(tmp_path, STUDY_CONFIG.replace("num_heads=4", "num_heads=5")))


def test_train_refuses_a_py_config_rather_than_drop_its_curriculum(tmp_path, capsys):
    from ddpm_lens.cli import main

    assert (
        main(["train", "--config", str(write(tmp_path, STUDY_CONFIG)), "--chkpt-dir", str(tmp_path / "c")])
        == 2
    )
    assert "read for its model only" in capsys.readouterr().err
    assert not (tmp_path / "c").exists()
