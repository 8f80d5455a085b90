import pytest

from ddpm_lens.analysis.training_runs import find_runs
from ddpm_lens.util.errors import UserError


def touch(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def test_runs_list_their_checkpoints_by_epoch_and_find_their_config(tmp_path):
    run = tmp_path / "chkpts" / "celeba"
    for name in (
        "celeba_20251219_113720_16.pt",
        "celeba_20251219_093720_2.pt",
        "celeba_8.pt",
        ".celeba_9.pt.tmp",
    ):
        touch(run / name)
    touch(run / "samples_2.png")
    touch(run / "config.json")
    (found,) = find_runs([run])
    assert found.name == "celeba" and found.config == run / "config.json"
    assert [p.name for p in found.checkpoints] == [
        "celeba_20251219_093720_2.pt",
        "celeba_8.pt",
        "celeba_20251219_113720_16.pt",
    ]
    assert find_runs([run], config="my.json")[0].config.name == "my.json"


def test_a_folder_of_runs_stands_for_its_runs_and_empty_folders_are_errors(tmp_path):
    touch(tmp_path / "chkpts" / "a" / "a_1.pt")
    touch(tmp_path / "chkpts" / "b" / "b_1.safetensors")
    runs = find_runs([tmp_path / "chkpts"])
    assert [r.name for r in runs] == ["a", "b"] and runs[0].config is None
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no checkpoints in"):
        find_runs([tmp_path / "empty"])
    with pytest.raises(UserError, match="not found"):
        find_runs([tmp_path / "missing"])
    touch(tmp_path / "x" / "a" / "a_2.pt")
    assert [r.name for r in find_runs([tmp_path / "chkpts" / "a", tmp_path / "x" / "a"])] == [
        "chkpts/a",
        "x/a",
    ]


def test_uvit_ckpts_folders_are_checkpoints_ordered_by_their_step(tmp_path):
    """The study's U-ViT workdir: ckpts/<step>.ckpt/ folders holding nnet.pth; 100 after 20 (numbers,
    not text); a folder without nnet files, or not named <step>.ckpt, is no checkpoint."""
    ckpts = tmp_path / "celeba64_uvit" / "ckpts"
    for step in (100, 20, 10):
        touch(ckpts / f"{step}.ckpt" / "nnet.pth")
        touch(ckpts / f"{step}.ckpt" / "nnet_ema.pth")
    touch(ckpts / "30.ckpt" / "step.pth")  # half-written: no weights
    touch(ckpts / "best" / "nnet_ema.pth")
    (found,) = find_runs([tmp_path / "celeba64_uvit"])
    assert found.name == "ckpts" and found.config is None
    assert [p.name for p in found.checkpoints] == ["10.ckpt", "20.ckpt", "100.ckpt"]
    (again,) = find_runs([ckpts], config=tmp_path / "uvit.py")
    assert again.checkpoints == found.checkpoints and again.config == tmp_path / "uvit.py"
