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
