"""The run loop: models on their own threads, the next chunk started ahead, rows in order."""

import numpy as np
import pytest
import torch
from conftest import torch_threads

from ddpm_lens.analysis.compare import compare_features
from ddpm_lens.analysis.inputs import clean_references, make_conditions
from ddpm_lens.analysis.stats import channel_summary
from ddpm_lens.analysis.stream import layer_measures


def _compare(tiny_pair, threads: int):
    with torch_threads(threads):  # 2: each model on its own lane; 1: one after the other, in the caller
        return compare_features(
            baseline_ckpt=str(tiny_pair[0]),
            curriculum_ckpt=str(tiny_pair[1]),
            num_samples=2,
            stats_samples=5,
            timesteps=(100, 700),
            layers=["in_conv", "encoder_level_1", "bottleneck"],
            batch_size=3,  # one sample (3 conditions) per chunk: five chunks, each started ahead
            dataset="synthetic-faces",
        )


@pytest.fixture(scope="module")
def both(tiny_pair):
    return _compare(tiny_pair, 2), _compare(tiny_pair, 1)


def test_lanes_give_the_rows_and_maps_of_the_sequential_loop(both):
    lanes, sequential = both
    key = ("sample", "condition", "layer", "model")

    def order(rows):
        return [tuple(r[k] for k in key) for r in rows]

    assert order(lanes.rows) == order(sequential.rows)
    for a, b in zip(lanes.rows, sequential.rows):
        for name in ("mean", "std", "hoyer", "kurtosis", "hf_share", "edge_energy"):
            assert a[name] == pytest.approx(b[name], rel=1e-4, abs=1e-6), name
    for model in ("baseline", "curriculum"):
        for layer in lanes.layers:
            np.testing.assert_allclose(
                lanes.activations[model][layer], sequential.activations[model][layer], rtol=1e-4, atol=1e-5
            )
    for a, b in zip(lanes.cka, sequential.cka):
        assert a["cka_debiased"] == pytest.approx(b["cka_debiased"], abs=1e-5)


def test_rows_come_sample_by_sample_and_each_model_sees_its_own_inputs(both):
    lanes, _ = both
    samples = [r["sample"] for r in lanes.rows]
    assert samples == sorted(samples) and set(samples) == set(range(5))
    base, cur = (lanes.activations[m]["in_conv"] for m in ("baseline", "curriculum"))
    assert base.shape[:2] == (5, 3) and not np.allclose(base, cur)  # two models, not one twice
    # every sample's clean maps differ from the next one's: no chunk was given another's inputs
    assert all(not np.allclose(base[i, 0], base[i + 1, 0]) for i in range(4))
    assert torch.equal(lanes.inputs[:, 0], lanes.images)  # the clean condition is the image itself


def test_an_error_in_the_sink_ends_the_model_threads_at_once(tiny_pair, two_threads):
    from ddpm_lens.analysis.options import visualize_options
    from ddpm_lens.analysis.plan import build_plan
    from ddpm_lens.analysis.stream import run_stream
    from ddpm_lens.analysis.timings import Timings

    plan = build_plan(
        visualize_options(
            baseline_ckpt=str(tiny_pair[0]),
            curriculum_ckpt=str(tiny_pair[1]),
            num_samples=3,
            timesteps=(500,),
            batch_size=2,
            dataset="synthetic-faces",
            device="cpu",
            progress=False,
            prefetch=False,
        )
    )

    def full_disk(chunk):
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError) as caught:  # its traceback keeps the stream's frames alive
        run_stream(plan, timings=Timings(), sink=full_disk)
    assert caught.value.errno == 28
    assert torch.get_num_threads() == 2  # the lanes' one-thread setting did not outlive the stream
    import threading

    assert not [t for t in threading.enumerate() if t.name.startswith("torch-lane")]


def test_noise_robustness_compares_with_the_clean_image_at_the_same_t():
    # features that move with the timestep and not with the input noise: each noisy map is the
    # clean image's map at the same t (+ a trace of noise), so the noise changed nothing, r ~ 1;
    # against the clean map at t = 0 (what was compared before) they are unrelated
    rng = np.random.default_rng(0)
    conditions = make_conditions((100, 900))
    n, c = 3, 4
    at_t = {t: rng.normal(size=(n, c, 8, 8)) for t in (0, 100, 900)}  # the clean image told t
    noisy = {t: at_t[t] + 1e-3 * rng.normal(size=(n, c, 8, 8)) for t in (100, 900)}
    acts = np.stack([at_t[0], noisy[100], noisy[900]], axis=1).reshape(n * 3, c, 8, 8)
    refs = np.stack([at_t[100], at_t[900]], axis=1).reshape(n * 2, c, 8, 8)
    robust = layer_measures(acts, channel_summary(acts), conditions, refs)["noise_robustness"].reshape(n, 3)
    assert np.isnan(robust[:, 0]).all() and np.all(robust[:, 1:] > 0.99)
    assert np.isnan(layer_measures(acts, channel_summary(acts), conditions)["noise_robustness"]).all()
    # the references are the clean images, sample-major over the noisy conditions' timesteps
    x0 = torch.arange(2.0)[:, None, None, None].expand(2, 3, 2, 2)
    x, t = clean_references(x0, conditions)
    assert t.tolist() == [100, 900, 100, 900] and torch.equal(x[:, 0, 0, 0], torch.tensor([0.0, 0, 1, 1]))
    assert len(clean_references(x0, make_conditions((100,), clean=False))[0]) == 0
