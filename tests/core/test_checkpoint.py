import json
import os
import pickle
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
import torch

from ddpm_lens.core.checkpoint import (
    checkpoint_name,
    export_safetensors,
    infer_model_config,
    load_model,
    load_weights,
    parse_epoch,
    save_checkpoint,
    strip_prefixes,
)
from ddpm_lens.core.config import save_config
from ddpm_lens.util.errors import UserError

ROOT = Path(__file__).resolve().parents[2]
KEYS = [
    line.split("\t")
    for line in (ROOT / "tests/fixtures/ddpm_torch_unet_celeba64_keys.tsv").read_text().splitlines()
]


def ddpm_torch_trainer_file(state: dict, shadow: dict, epoch: int = 16) -> dict:
    """The layout of ddpm-torch's Trainer.save_checkpoint (see ../shared/compat)."""
    return {
        "model": state,
        "optimizer": {"state": {}, "param_groups": [{"lr": 2e-5, "params": list(range(len(state)))}]},
        "scheduler": {"last_epoch": 100, "base_lrs": [2e-5]},
        "ema": {"decay": 0.9999, "shadow": shadow, "num_updates": 99},
        "epoch": epoch,
        "loss": 0.031,
    }


@pytest.fixture(scope="module")
def celeba_trainer_file(tmp_path_factory):
    """A full-size ddpm-torch trainer checkpoint built from the compat key list."""
    g = torch.Generator().manual_seed(0)
    state = {k: torch.zeros(json.loads(s)) for k, s in KEYS}
    shadow = {k: torch.randn(json.loads(s), generator=g) * 0.01 for k, s in KEYS}
    path = tmp_path_factory.mktemp("ckpt") / "celeba_20251219_113720_16.pt"
    torch.save(ddpm_torch_trainer_file(state, shadow), path)
    return path, shadow


def test_ddpm_torch_trainer_file_loads_ema_strictly(celeba_trainer_file):
    path, shadow = celeba_trainer_file
    model, diffusion, cfg = load_model(ROOT / "configs/celeba.json", path)
    sd = model.state_dict()
    assert list(sd) == [k for k, _ in KEYS]
    assert all(torch.equal(sd[k], shadow[k]) for k in sd)  # the EMA weights, not the zero "model"
    assert not any(p.is_meta for p in model.parameters()) and not model.training
    assert diffusion.timesteps == 1000 and cfg.model.hid_channels == 128
    raw, _, _ = load_model(ROOT / "configs/celeba.json", path, use_ema=False)
    assert all(torch.all(p == 0) for p in raw.parameters())
    w = load_weights(path)
    assert (w.which, w.epoch) == ("ema", 16) and "EMA" in w.description


def test_module_prefixed_and_bare_files(tmp_path, tiny_model):
    sd = tiny_model.state_dict()
    ddp = {"module." + k: v for k, v in sd.items()}
    save_checkpoint(ddpm_torch_trainer_file(ddp, ddp, epoch=3), tmp_path / "tiny_3.pt")
    w = load_weights(tmp_path / "tiny_3.pt")
    assert list(w.state_dict) == list(sd) and w.epoch == 3
    torch.save(sd, tmp_path / "bare.pt")
    w = load_weights(tmp_path / "bare.pt")
    assert w.which == "state_dict" and all(torch.equal(w.state_dict[k], sd[k]) for k in sd)
    assert strip_prefixes({"module._orig_mod.a": torch.zeros(1)}) == {"a": torch.zeros(1)}


def test_no_ema_falls_back_to_model_weights(tmp_path, tiny_model, capsys):
    sd = tiny_model.state_dict()
    save_checkpoint({"model": sd, "epoch": 2}, tmp_path / "noema_2.pt")
    w = load_weights(tmp_path / "noema_2.pt", use_ema=True)
    assert w.which == "model" and "warning: " in capsys.readouterr().err


class _Exploit:
    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickled_code_is_refused_not_run(tmp_path):
    marker = tmp_path / "pwned"
    _Exploit.marker = marker
    path = tmp_path / "evil.pt"
    torch.save({"model": {"w": torch.zeros(1)}, "payload": _Exploit()}, path)
    with pytest.raises(UserError, match="refused: it holds pickled Python objects"):
        load_weights(path)
    assert not marker.exists()


@pytest.mark.parametrize(
    "layout", ["legacy-torch-save", "pickle-protocol-0", "pickle-protocol-4", "pickle-protocol-5", "zip"]
)
def test_pickled_code_in_any_pickle_layout_is_reported_as_refused(tmp_path, layout):
    """torch's weights-only unpickler stops at protocol 4's FRAME or protocol 0's opcodes before it
    meets the callable; the file must still be reported as refused code, not as a broken file."""
    marker = tmp_path / "pwned"
    _Exploit.marker = marker
    path = tmp_path / "evil.pt"
    payload = {"model": {"w": torch.zeros(1)}, "payload": _Exploit()}
    if layout == "legacy-torch-save":
        torch.save(payload, path, _use_new_zipfile_serialization=False)
    elif layout == "zip":
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload, protocol=int(layout[-1])))
    with pytest.raises(UserError, match=r"refused: it holds pickled Python objects \(e.g. posix.system\)"):
        load_weights(path)
    assert not marker.exists()


@pytest.mark.parametrize("kind", ["missing", "truncated", "random", "not-a-dict", "empty-legacy"])
def test_bad_files_are_one_line_errors(tmp_path, tiny_model, kind):
    path = tmp_path / "x.pt"
    if kind == "truncated":
        torch.save(tiny_model.state_dict(), path)
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif kind == "random":
        path.write_bytes(os.urandom(4096))
    elif kind == "not-a-dict":
        torch.save([1, 2, 3], path)
    elif kind == "empty-legacy":
        path.write_bytes(pickle.dumps({"epoch": 1}))
    with pytest.raises(UserError) as info:
        load_weights(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)


def test_mismatch_names_keys_shapes_and_fitting_config(tmp_path, tiny_model):
    path = tmp_path / "tiny_1.pt"
    save_checkpoint({"model": tiny_model.state_dict(), "epoch": 1}, path)
    with pytest.raises(UserError) as info:
        load_model(ROOT / "configs/celeba.json", path, use_ema=False)
    msg = str(info.value)
    assert "does not fit config" in msg and "114 missing keys" in msg
    assert "embed.0.weight: checkpoint [128, 32] vs model [512, 128]" in msg
    assert "hid_channels=32" in msg and "ch_multipliers=[1, 1, 2, 2]" in msg and "num_res_blocks=1" in msg


def test_infer_model_config_of_celeba_keys():
    sd = {k: torch.empty(json.loads(s), device="meta") for k, s in KEYS}
    assert infer_model_config(sd) == {
        "in_channels": 3,
        "hid_channels": 128,
        "ch_multipliers": [1, 2, 2, 2],
        "apply_attn": [False, False, True, False],
        "num_res_blocks": 2,
    }


def test_own_checkpoint_carries_its_config(tmp_path, tiny_model):
    from ddpm_lens.core.config import load_config

    cfg = load_config(ROOT / "configs/tiny.json")
    save_checkpoint(
        {
            "model": tiny_model.state_dict(),
            "ema": {"shadow": tiny_model.state_dict()},
            "config": cfg.to_dict(),
            "epoch": 1,
        },
        tmp_path / "run_1.pt",
    )
    model, _, loaded = load_model(None, tmp_path / "run_1.pt")
    assert loaded.model == cfg.model
    torch.save(tiny_model.state_dict(), tmp_path / "bare.pt")
    with pytest.raises(UserError, match="carries no config"):
        load_model(None, tmp_path / "bare.pt")


def test_safetensors_export_round_trip(tmp_path, tiny_model):
    torch.save(
        {"model": tiny_model.state_dict(), "ema": {"shadow": tiny_model.state_dict()}}, tmp_path / "a.pt"
    )
    export_safetensors(load_weights(tmp_path / "a.pt"), tmp_path / "a.safetensors")
    w = load_weights(tmp_path / "a.safetensors")
    assert w.which == "ema" and w.config is None
    assert all(torch.equal(w.state_dict[k], v) for k, v in tiny_model.state_dict().items())
    from ddpm_lens.core.config import load_config

    cfg = load_config(ROOT / "configs/tiny.json")
    export_safetensors(load_weights(tmp_path / "a.pt"), tmp_path / "c.safetensors", config=cfg.to_dict())
    model, _, loaded = load_model(None, tmp_path / "c.safetensors")  # self-describing: no config file
    assert loaded.model == cfg.model
    assert all(torch.equal(model.state_dict()[k], v) for k, v in tiny_model.state_dict().items())
    (tmp_path / "b.safetensors").write_bytes(b"garbage")
    with pytest.raises(UserError, match="not a readable safetensors file"):
        load_weights(tmp_path / "b.safetensors")


def test_names_and_epochs():
    when = datetime(2025, 12, 19, 11, 37, 20)
    assert checkpoint_name("celeba", 16, when) == "celeba_20251219_113720_16.pt"
    assert parse_epoch("chkpts/celeba/celeba_20251219_113720_16.pt") == 16
    assert parse_epoch("celeba_600.pt") == 600
    assert parse_epoch("final.pt") is None


def test_atomic_save_never_leaves_partial_files(tmp_path, tiny_model):
    path = tmp_path / "run_1.pt"
    save_checkpoint({"model": tiny_model.state_dict()}, path)
    before = path.read_bytes()

    class Unsaveable:
        def __reduce__(self):
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        save_checkpoint({"model": tiny_model.state_dict(), "x": Unsaveable()}, path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run_1.pt"]
    save_config_target = tmp_path / "c.json"
    from ddpm_lens.core.config import config_from_dict

    save_config(config_from_dict({}), save_config_target)
    assert json.loads(save_config_target.read_text())["model"]["hid_channels"] == 128


def test_random_files_are_always_a_one_line_user_error(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "junk.pt"
    for i in range(150):
        head = b"PK\x03\x04" if i % 3 == 0 else b"\x80\x02" if i % 3 == 1 else b""
        path.write_bytes(head + rng.integers(0, 256, int(rng.integers(1, 3000)), dtype=np.uint8).tobytes())
        with pytest.raises(UserError, match="truncated or not a PyTorch checkpoint|holds no weights"):
            load_weights(path)


def test_a_study_run_folders_config_json_is_the_checkpoints_config(tmp_path):
    """The study's checkpoints carry no config; its trainer writes config.json beside them."""
    from conftest import write_study_run

    from ddpm_lens.core.checkpoint import load_weights, resolve_config

    ckpt = write_study_run(tmp_path / "tiny_study" / "20251219_113720", config="configs/tiny_study.json",
                           epochs=(1,), run_seed=77)[0]  # fmt: skip
    cfg = resolve_config(None, load_weights(ckpt))
    assert cfg.train.seed == 77 and cfg.source == str(ckpt.parent / "config.json")
    model, _, _ = load_model(None, ckpt)
    assert model.hid_channels == 32


# ---- the values of the weights used: finite floats (#20.8, #21.7) ----------------------------
def _tiny_trainer_file(tmp_path, tiny_model, change=None, *, name="t.pt"):
    """A trainer file whose EMA weights differ from its raw ones; ``change(shadow)`` edits the EMA."""
    raw = {k: v.clone() for k, v in tiny_model.state_dict().items()}
    shadow = {k: v + 0.01 for k, v in raw.items()}
    if change:
        change(shadow)
    path = tmp_path / name
    torch.save({"model": raw, "ema": {"shadow": shadow}, "epoch": 1}, path)
    return path


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_weights_are_refused_naming_the_tensor(tmp_path, tiny_model, value):
    def poison(sd):
        sd["middle.0.conv1.weight"][3, 1, 0, 2] = value

    path = _tiny_trainer_file(tmp_path, tiny_model, poison)
    with pytest.raises(UserError) as err:
        load_weights(path)
    msg = str(err.value)
    assert "'middle.0.conv1.weight'" in msg and "1 NaN/inf value" in msg and "--allow_nonfinite" in msg
    assert "\n" not in msg
    assert load_weights(path, use_ema=False).which == "model"  # the raw weights are finite
    back = load_weights(path, allow_nonfinite=True).state_dict["middle.0.conv1.weight"]
    assert back[3, 1, 0, 2].item() == value or np.isnan(back[3, 1, 0, 2].item())


def test_large_finite_weights_whose_sum_overflows_are_accepted(tmp_path, tiny_model):
    def huge(sd):
        sd["in_conv.weight"].fill_(3e38)  # finite, but their float32 sum is inf

    load_weights(_tiny_trainer_file(tmp_path, tiny_model, huge))


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.uint8, torch.bool])
def test_integer_or_bool_tensors_for_float_weights_are_refused(tmp_path, tiny_model, dtype):
    def cast(sd):
        sd["in_conv.weight"] = (sd["in_conv.weight"] * 100).to(dtype)

    with pytest.raises(UserError, match=rf"'in_conv.weight' holds {dtype} values where float weights belong"):
        load_weights(_tiny_trainer_file(tmp_path, tiny_model, cast))


def test_half_precision_weights_and_the_cs_integer_buffer_are_accepted(tmp_path, tiny_model):
    def half(sd):
        sd["in_conv.weight"] = sd["in_conv.weight"].half()
        sd["channel_birth_stage"] = torch.zeros(64, dtype=torch.long)

    weights = load_weights(_tiny_trainer_file(tmp_path, tiny_model, half))
    assert weights.state_dict["in_conv.weight"].dtype == torch.float16


def test_non_finite_weights_in_a_safetensors_file_are_refused(tmp_path, tiny_model):
    from safetensors.torch import save_file

    sd = {k: v.contiguous() for k, v in tiny_model.state_dict().items()}
    sd["out_conv.2.bias"][0] = float("nan")
    save_file(sd, str(tmp_path / "w.safetensors"))
    with pytest.raises(UserError, match="'out_conv.2.bias'"):
        load_weights(tmp_path / "w.safetensors")
