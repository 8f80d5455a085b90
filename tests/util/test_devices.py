import pytest
import torch

from ddpm_lens.util.devices import pick_device
from ddpm_lens.util.errors import UserError


def test_cpu_and_auto():
    assert pick_device("cpu") == torch.device("cpu")
    assert pick_device("auto").type in ("cpu", "cuda")


@pytest.mark.parametrize("requested", ["mps", "xpu", "meta", "mps:0"])
def test_kinds_torch_knows_but_the_tool_does_not_run_on_list_the_valid_ones(requested):
    # `--device mps` used to get as far as the first .to() and die with NotImplementedError
    with pytest.raises(
        UserError, match=f"device '{requested}' is not supported .*use auto, cpu, cuda or cuda:N"
    ):
        pick_device(requested)


@pytest.mark.parametrize("requested", ["gpu", "cuda:x", ""])
def test_unknown_kinds_list_the_valid_ones(requested):
    with pytest.raises(UserError, match=f"unknown device '{requested}': use auto, cpu, cuda or cuda:N"):
        pick_device(requested)


def test_cuda_without_cuda_falls_back_or_refuses(capsys):
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    assert pick_device("cuda:0") == torch.device("cpu")
    assert "using the CPU instead of cuda:0" in capsys.readouterr().err
    with pytest.raises(UserError, match="CUDA is not available"):
        pick_device("cuda", fallback=False)
