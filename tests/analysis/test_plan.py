"""build_plan reports every problem with the second model or the data before any heavy work:
no weights copied into a model (core.checkpoint.model_from_weights), no forward pass."""

from __future__ import annotations

from pathlib import Path

import pytest

import ddpm_lens.analysis.model_pair as model_pair
import ddpm_lens.analysis.stream as stream
import ddpm_lens.core.checkpoint as checkpoint
from ddpm_lens.analysis.options import VisualizeOptions
from ddpm_lens.analysis.plan import build_plan
from ddpm_lens.util.errors import UserError

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def heavy_work(monkeypatch):
    """Records each model built with weights and each forward pass."""
    calls = []
    real_build, real_forward = checkpoint.model_from_weights, stream.forward_layers

    def build(*args, **kwargs):
        calls.append("model_from_weights")
        return real_build(*args, **kwargs)

    def forward(*args, **kwargs):
        calls.append("forward_layers")
        return real_forward(*args, **kwargs)

    for module in (checkpoint, model_pair):
        if hasattr(module, "model_from_weights"):
            monkeypatch.setattr(module, "model_from_weights", build)
    monkeypatch.setattr(stream, "forward_layers", forward)
    return calls


def _options(tiny_pair, **overrides):
    base = {"baseline_ckpt": str(tiny_pair[0]), "curriculum_ckpt": str(tiny_pair[1]), "device": "cpu"}
    return VisualizeOptions(**{**base, **overrides})


@pytest.mark.parametrize(
    "case, message",
    [
        ("missing-second", "not found"),
        ("random-second", "truncated or not a PyTorch checkpoint"),
        ("second-does-not-fit", "does not fit"),
        ("missing-data", "CelebA not found"),
        ("data-not-used", "reads no folder"),
    ],
)
def test_second_model_and_data_errors_come_before_any_weights_load(
    tmp_path, tiny_pair, heavy_work, case, message
):
    overrides = {}
    if case == "missing-second":
        overrides["curriculum_ckpt"] = str(tmp_path / "nope.pt")
    elif case == "random-second":
        (tmp_path / "random.pt").write_bytes(b"\x80\x02" + bytes(range(256)) * 4)
        overrides["curriculum_ckpt"] = str(tmp_path / "random.pt")
    elif case == "second-does-not-fit":
        overrides["config_curriculum"] = str(ROOT / "configs/celeba.json")
    elif case == "missing-data":
        overrides.update(dataset="celeba", data_dir=str(tmp_path / "no-celeba-here"))
    elif case == "data-not-used":
        overrides["data_dir"] = str(tmp_path)
    with pytest.raises(UserError, match=message):
        build_plan(_options(tiny_pair, **overrides))
    assert heavy_work == []


def test_a_good_request_loads_both_models_once(tiny_pair, heavy_work):
    plan = build_plan(_options(tiny_pair, dataset="synthetic-faces", num_samples=1))
    assert [m.model is not None for m in plan.models] == [True, True]
    assert heavy_work == ["model_from_weights", "model_from_weights"]


def test_too_few_images_for_stats_samples_names_stats_samples(tiny_pair, heavy_work, face_folder):
    # it used to say "lower --num_samples" when --num_samples was 1 and --stats_samples the culprit
    options = _options(
        tiny_pair, dataset="folder", data_dir=str(face_folder), num_samples=1, stats_samples=10**9
    )
    with pytest.raises(
        UserError, match=r"\(--stats_samples 1000000000\) .*hold only 16: lower --stats_samples"
    ) as info:
        build_plan(options)
    assert "--num_samples" not in str(info.value)
    with pytest.raises(UserError, match="lower --num_samples"):
        build_plan(_options(tiny_pair, dataset="folder", data_dir=str(face_folder), num_samples=17))


def test_a_negative_threshold_is_refused(tiny_pair, heavy_work):
    # --threshold -1 counted nothing as sparse: sparsity 0 everywhere, silently
    for bad in (-1.0, float("nan")):
        with pytest.raises(UserError, match="--threshold must be 0 or more"):
            build_plan(_options(tiny_pair, threshold=bad))
    assert heavy_work == []


def test_an_output_folder_inside_the_folder_dataset_is_refused(tiny_pair, heavy_work, tmp_path):
    # the folder dataset reads recursively: a second run read the first run's figures as inputs
    data = tmp_path / "pics"
    data.mkdir()
    for out in (data / "out", data / "a" / "b"):
        with pytest.raises(
            UserError, match=r"--output_dir .* is inside --data_dir .*: pass an --output_dir outside"
        ):
            build_plan(_options(tiny_pair, dataset="folder", data_dir=str(data), output_dir=str(out)))
    assert heavy_work == []


def test_a_config_less_checkpoint_names_the_arms_config_flag(tiny_pair, heavy_work, tmp_path):
    # it said "pass ... (e.g. --config configs/celeba.json)": visualize has no --config
    from safetensors.torch import load_file, save_file

    from ddpm_lens.core.checkpoint import export_safetensors, load_weights

    bare = tmp_path / "bare.safetensors"
    export_safetensors(load_weights(tiny_pair[1]), tmp_path / "with-config.safetensors")
    save_file(load_file(tmp_path / "with-config.safetensors"), bare)  # the tensors, no metadata
    with pytest.raises(UserError, match="pass its JSON config with --config_curriculum") as info:
        build_plan(_options(tiny_pair, curriculum_ckpt=str(bare)))
    assert "--config " not in str(info.value)


def test_the_seed_preset_shows_a_cs_models_bottleneck_after_its_mask(tmp_path, tiny_pair):
    """The mask multiplies the bottleneck before the decoder: the seed layers used to stop before it."""
    from conftest import write_study_checkpoint

    cs = write_study_checkpoint(tmp_path / "tiny_cs_20251219_132723_3.pt", config="configs/tiny_cs.json")
    cs_opts = {"curriculum_ckpt": str(cs), "config_curriculum": str(ROOT / "configs/tiny_cs.json")}
    plan = build_plan(_options(tiny_pair, **cs_opts, dataset="synthetic-faces", num_samples=1))
    assert plan.layers[-2:] == ["bottleneck", "bottleneck_masked"]
    plain = build_plan(_options(tiny_pair, dataset="synthetic-faces", num_samples=1))
    assert "bottleneck_masked" not in plain.layers and plain.layers[-1] == "bottleneck"


def test_diverged_weights_of_the_second_model_are_refused_unless_allowed(tmp_path, tiny_pair, heavy_work):
    import torch

    obj = torch.load(tiny_pair[1], weights_only=True)
    obj["ema"]["shadow"]["out_conv.2.weight"][0, 0, 0, 0] = float("nan")  # after every tapped layer
    torch.save(obj, tmp_path / "diverged.pt")
    with pytest.raises(UserError, match=r"diverged.pt: 'out_conv.2.weight' .* 1 NaN/inf value of"):
        build_plan(_options(tiny_pair, curriculum_ckpt=str(tmp_path / "diverged.pt")))
    assert heavy_work == []
    allowed = {"allow_nonfinite": True, "dataset": "synthetic-faces", "num_samples": 1}
    plan = build_plan(_options(tiny_pair, curriculum_ckpt=str(tmp_path / "diverged.pt"), **allowed))
    assert plan.models[1].model.state_dict()["out_conv.2.weight"].isnan().sum() == 1
