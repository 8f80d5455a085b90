import numpy as np
import pytest
import torch
from PIL import Image

from ddpm_lens.analysis.image_sources import open_source, parse_dataset_spec, sample_noise, source_kind
from ddpm_lens.data.datasets import build_dataset, first_n, to_uint8
from ddpm_lens.util.errors import UserError

pytestmark = pytest.mark.usefixtures("one_thread")  # sampling: 2 threads stall each other here


def test_specs_name_their_kind_and_bad_ones_say_what_is_accepted(tmp_path, tiny_pair):
    assert source_kind("dataset:celeba:test") == "dataset"
    assert source_kind(str(tmp_path)) == "folder"
    assert source_kind(str(tiny_pair[0])) == "checkpoint"
    with pytest.raises(UserError, match="does not exist.*dataset:NAME"):
        source_kind(str(tmp_path / "missing"))
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(UserError, match="neither a folder nor a checkpoint"):
        source_kind(str(tmp_path / "notes.txt"))
    assert parse_dataset_spec("dataset:synthetic-faces") == ("synthetic-faces", "test")
    assert parse_dataset_spec("dataset:celeba:valid") == ("celeba", "valid")
    with pytest.raises(UserError, match="dataset:NAME:SPLIT"):
        parse_dataset_spec("dataset::test")


def test_a_dataset_gives_its_first_images_and_a_cache_key():
    src = open_source("dataset:synthetic-faces:test", num=5, resolution=16)
    expected = first_n(build_dataset("synthetic-faces", split="test", resolution=16), 5)
    assert torch.equal(src.images(range(5)), expected)
    assert src.cache_key == {"dataset": "synthetic-faces", "split": "test", "resolution": 16, "n": 5}
    with pytest.raises(UserError, match="--resolution"):
        open_source("dataset:synthetic-faces", num=5)


def test_a_folder_keeps_its_images_size_and_a_small_folder_gives_what_it_has(tmp_path, capsys):
    faces = to_uint8(first_n(build_dataset("synthetic-faces", resolution=24), 3))  # (3, 24, 24, 3)
    for i, face in enumerate(faces):
        Image.fromarray(face).save(tmp_path / f"{i}.png")
    src = open_source(str(tmp_path), num=10)
    assert (src.n, src.resolution, src.cache_key) == (3, 24, None)
    assert "fewer than --num 10" in capsys.readouterr().err
    assert np.array_equal(to_uint8(src.images([2, 0])), faces[[2, 0]])  # read back exactly
    assert open_source(str(tmp_path), num=2, resolution=16).images([0]).shape == (1, 3, 16, 16)


def test_checkpoint_samples_depend_on_seed_and_index_not_on_batching(tiny_pair):
    src = open_source(str(tiny_pair[0]), num=4, steps=2, seed=3)
    assert src.resolution == 32 and src.description["weights"] == "ema"
    together = src.images([0, 1, 2])
    apart = torch.cat([src.images([2]), src.images([0, 1])])[[1, 2, 0]]
    torch.testing.assert_close(together, apart, atol=2e-4, rtol=0)
    other_seed = open_source(str(tiny_pair[0]), num=4, steps=2, seed=4).images([0])
    assert (other_seed - together[:1]).abs().mean() > 0.01
    assert torch.equal(sample_noise(3, 1, (2,)), sample_noise(3, 1, (2,)))
    with pytest.raises(UserError, match="--steps must be in 1..1000"):
        open_source(str(tiny_pair[0]), num=1, steps=0)


@pytest.mark.cuda
def test_ddim_samples_on_cuda_are_the_cpus(tiny_pair):
    cpu = open_source(str(tiny_pair[0]), num=3, steps=5, device="cpu").images([0, 1, 2])
    gpu = open_source(str(tiny_pair[0]), num=3, steps=5, device="cuda").images([0, 1, 2])
    assert gpu.device.type == "cpu" and gpu.shape == cpu.shape  # handed back on the CPU
    assert (gpu - cpu).abs().max() < 0.05 and (gpu - cpu).abs().mean() < 5e-3  # same noise; TF32 convs
