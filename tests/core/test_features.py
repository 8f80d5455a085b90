import pytest
import torch

from ddpm_lens.core.features import SEED_LAYERS, extract_features, hooked, resolve_layers
from ddpm_lens.util.errors import UserError


def test_seed_preset_and_order(tiny_model):
    assert resolve_layers(tiny_model, ["seed"]) == list(SEED_LAYERS)
    assert resolve_layers(tiny_model, ["bottleneck", "in_conv", "in_conv"]) == ["in_conv", "bottleneck"]
    assert resolve_layers(tiny_model, ["decoder"])[:2] == ["decoder_block_3", "decoder_level_3"]
    blocks = [
        "in_conv",
        "encoder_block_0",
        "encoder_block_1",
        "encoder_block_2",
        "encoder_block_3",
        "bottleneck",
    ]
    assert resolve_layers(tiny_model, ["blocks"]) == blocks
    with pytest.raises(UserError, match="unknown layer 'encoder_level_9' .*valid: in_conv, encoder_block_0"):
        resolve_layers(tiny_model, ["encoder_level_9"])


def test_early_stop_equals_full_forward_and_skips_the_decoder(tiny_model):
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([0, 500, 999])
    early = extract_features(tiny_model, x, t, ["seed"])
    full = extract_features(tiny_model, x, t, ["seed"], stop_early=False)
    assert list(early) == list(SEED_LAYERS)
    for name in SEED_LAYERS:
        assert torch.equal(early[name], full[name])
    calls = []
    hook = tiny_model.out_conv.register_forward_hook(lambda *a: calls.append(1))
    extract_features(tiny_model, x, t, ["seed"])
    assert calls == []  # decoder/output never ran
    extract_features(tiny_model, x, t, ["output"])
    assert calls == [1]
    hook.remove()


def test_features_depend_on_t_after_perturbation(tiny_model):
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    a = extract_features(tiny_model, x, 0, ["bottleneck"])["bottleneck"]
    b = extract_features(tiny_model, x, 999, ["bottleneck"])["bottleneck"]
    assert (a - b).abs().mean() > 1e-3


def test_hooks_are_removed_and_mode_restored_even_on_error(tiny_model):
    tiny_model.train()
    with pytest.raises(RuntimeError), hooked(tiny_model, ["in_conv"]):
        assert not tiny_model.training
        raise RuntimeError("boom")
    assert tiny_model.training
    assert all(not m._forward_hooks for m in tiny_model.modules())


def test_scalar_t_is_broadcast(tiny_model):
    x = torch.randn(2, 3, 32, 32)
    a = extract_features(tiny_model, x, 100, ["in_conv", "encoder_level_0"])
    b = extract_features(tiny_model, x, torch.tensor([100, 100]), ["in_conv", "encoder_level_0"])
    assert torch.equal(a["encoder_level_0"], b["encoder_level_0"])
    assert a["in_conv"].shape == (2, 32, 32, 32)
