"""Any denoiser through the same analyses: load_model(model=...), module-path layers, import paths."""

import textwrap

import pytest
import torch
from conftest import perturb
from torch import nn

from ddpm_lens.core.any_model import as_map, build_module
from ddpm_lens.core.checkpoint import load_model
from ddpm_lens.core.features import extract_features, resolve_layers
from ddpm_lens.util.errors import UserError

NET = textwrap.dedent(
    '''
    import torch
    from torch import nn

    class Net(nn.Module):
        """forward(x, t) -> eps; a conv stem, a token mixer in the middle, a conv head."""

        def __init__(self, width=8):
            super().__init__()
            self.stem = nn.Conv2d(3, width, 3, padding=1)
            self.time = nn.Embedding(1000, width)
            self.mid = nn.Sequential(nn.Linear(width, width), nn.GELU())
            self.head = nn.Conv2d(width, 3, 3, padding=1)

        def forward(self, x, t):
            h = self.stem(x) + self.time(t)[:, :, None, None]
            b, c, hh, ww = h.shape
            tokens = self.mid(h.flatten(2).transpose(1, 2))  # (B, H*W, C)
            return self.head(tokens.transpose(1, 2).reshape(b, c, hh, ww))
    '''
)


@pytest.fixture
def net_module(tmp_path, monkeypatch):
    (tmp_path / "my_denoiser.py").write_text(NET)
    monkeypatch.syspath_prepend(str(tmp_path))
    return build_module("my_denoiser:Net", {"width": 8})


def test_a_users_module_loads_its_ema_weights_and_taps_module_paths(tmp_path, net_module):
    raw = perturb(net_module, seed=1).state_dict()
    ema = {k: v + 1.0 for k, v in raw.items()}
    torch.save({"model": raw, "ema": {"shadow": ema}}, tmp_path / "run.pt")
    model, diffusion, cfg = load_model(
        None, tmp_path / "run.pt", model="my_denoiser:Net", model_kwargs={"width": 8}
    )
    assert all(torch.equal(model.state_dict()[k], v) for k, v in ema.items())
    assert not model.training and diffusion.timesteps == 1000 and cfg.diffusion.model_mean_type == "eps"
    x, t = torch.rand(2, 3, 8, 8) * 2 - 1, torch.tensor([3, 400])
    feats = extract_features(model, x, t, ["mid", "stem", "mid.0"])
    assert list(feats) == ["stem", "mid", "mid.0"]  # the table (top-level children) first, then paths
    assert feats["stem"].shape == (2, 8, 8, 8) and feats["mid"].shape == (2, 8, 8, 8)
    with torch.no_grad():  # tokens (B, 64, 8) laid out as the 8x8 maps they came from
        h = model.stem(x) + model.time(t)[:, :, None, None]
        expected = torch.einsum("oc,bchw->bohw", model.mid[0].weight, h) + model.mid[0].bias[:, None, None]
        assert (feats["mid.0"] - expected).abs().max() <= 1e-5 * expected.abs().max()  # float32 sum order
    same, _, _ = load_model(None, ema, model=type(net_module)(width=8))  # a state dict in memory
    assert all(torch.equal(same.state_dict()[k], v) for k, v in ema.items())
    other = type(net_module)(width=8)
    model2, _, _ = load_model(None, tmp_path / "run.pt", use_ema=False, model=other)
    assert model2 is other and all(torch.equal(model2.state_dict()[k], v) for k, v in raw.items())


def test_what_does_not_fit_is_named_in_one_line(tmp_path, net_module):
    torch.save(net_module.state_dict(), tmp_path / "w.pt")
    with pytest.raises(
        UserError, match=r"does not fit config model my_denoiser:Net: .*shape mismatches \(e.g. stem.weight"
    ):
        load_model(None, tmp_path / "w.pt", model="my_denoiser:Net", model_kwargs={"width": 4})
    with pytest.raises(UserError, match="cannot import no_such_pkg"):
        build_module("no_such_pkg.mod:Net")
    with pytest.raises(UserError, match="'pkg.module:Class'"):
        build_module("my_denoiser.Net")
    with pytest.raises(UserError, match="rejects the keyword arguments"):
        build_module("my_denoiser:Net", {"depth": 3})
    with pytest.raises(UserError, match=r"unknown layer 'mid.1.x' .*closest: mid.1, mid.0"):
        resolve_layers(net_module, ["mid.1.x"])


def test_tap_outputs_that_are_not_maps_are_refused_naming_the_layer():
    assert as_map(nn.Identity(), torch.zeros(2, 5), "fc").shape == (2, 5, 1, 1)
    with pytest.raises(UserError, match="layer 'mid' returns shape \\(2, 5, 3\\)"):
        as_map(nn.Identity(), torch.zeros(2, 5, 3), "mid")
    with pytest.raises(UserError, match="layer 'x' returns dict"):
        as_map(nn.Identity(), {}, "x")
