import numpy as np
import pytest
from PIL import Image

from ddpm_lens.data.datasets import build_dataset
from ddpm_lens.data.factors import celeba_attributes, dataset_factors
from ddpm_lens.data.synthetic_faces import FACE_FACTORS, face_factor_table
from ddpm_lens.util.errors import UserError


def test_synthetic_dataset_factors_follow_the_split():
    table, names = dataset_factors("synthetic-faces", split="test", count=3, seed=1)
    assert names == list(FACE_FACTORS)
    np.testing.assert_array_equal(table, face_factor_table(51_000, 3, seed=1))
    with pytest.raises(UserError, match="only 1000"):
        dataset_factors("synthetic-faces", split="valid", count=1001)
    with pytest.raises(UserError, match="unknown split"):
        dataset_factors("synthetic-faces", split="val", count=1)
    assert dataset_factors("folder", root=".", count=1) is None


# --- CelebA attributes ----------------------------------------------------------------------

_PARTITION = {"000001.jpg": 0, "000002.jpg": 1, "000003.jpg": 0, "000004.jpg": 2}
_ATTRIBUTES = {  # three of the 40, as the release writes them (two spaces before a 1)
    "000001.jpg": "-1  1 -1",
    "000002.jpg": " 1  1 -1",
    "000003.jpg": " 1 -1  1",
    "000004.jpg": "-1 -1 -1",
}


@pytest.fixture
def celeba_root(tmp_path):
    images = tmp_path / "celeba" / "img_align_celeba"
    images.mkdir(parents=True)
    for name in _PARTITION:
        Image.new("RGB", (178, 218), "gray").save(images / name)
    lines = [f"{name} {code}" for name, code in _PARTITION.items()]
    (tmp_path / "celeba" / "list_eval_partition.txt").write_text("\n".join(lines) + "\n")
    attrs = ["4", "Bald Male Smiling "] + [f"{n} {v}" for n, v in _ATTRIBUTES.items()]
    (tmp_path / "celeba" / "list_attr_celeba.txt").write_text("\n".join(attrs) + "\n")
    return tmp_path


def test_celeba_attributes_follow_the_split_order_as_zero_one(celeba_root):
    table, names = celeba_attributes(celeba_root, split="train")
    assert names == ["Bald", "Male", "Smiling"]
    assert [p.name for p in build_dataset("celeba", root=celeba_root, split="train").paths] == [
        "000001.jpg",
        "000003.jpg",
    ]
    np.testing.assert_array_equal(table, [[0, 1, 0], [1, 0, 1]])
    table, _ = dataset_factors("celeba", root=celeba_root, split="all", count=3)
    np.testing.assert_array_equal(table, [[0, 1, 0], [1, 1, 0], [1, 0, 1]])


def test_celeba_without_the_attribute_file_has_no_factors(celeba_root):
    (celeba_root / "celeba" / "list_attr_celeba.txt").unlink()
    assert celeba_attributes(celeba_root) is None
    assert dataset_factors("celeba", root=celeba_root, count=1) is None


def test_celeba_attribute_file_problems_name_the_line_or_image(celeba_root):
    path = celeba_root / "celeba" / "list_attr_celeba.txt"
    text = path.read_text()
    path.write_text(text.replace("000003.jpg  1 -1  1", "000003.jpg  1 0  1"))
    with pytest.raises(UserError, match=r"list_attr_celeba.txt:5: expected '<image>.jpg' and 3 values"):
        celeba_attributes(celeba_root)
    path.write_text("\n".join(line for line in text.splitlines() if not line.startswith("000003")))
    with pytest.raises(UserError, match="1 of the 2 train images have no line in .*000003.jpg"):
        celeba_attributes(celeba_root)
