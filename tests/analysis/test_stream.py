"""The run loop: models on their own threads, the next chunk started ahead, rows in order."""

import numpy as np
import pytest
import torch
from conftest import torch_threads

from ddpm_lens.analysis.compare import compare_features


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
