import numpy as np
import pytest
import torch
from PIL import Image

from ddpm_lens.data.datasets import (
    CELEBA_BOX,
    DATASETS,
    SyntheticFaces,
    build_dataset,
    center_crop_resize,
    first_n,
    from_uint8,
    load_images,
    open_rgb,
    to_uint8,
)
from ddpm_lens.data.synthetic_faces import draw_face
from ddpm_lens.util.errors import UserError

# --- helpers ---------------------------------------------------------------------------------


def test_uint8_round_trip_is_exact_for_every_value():
    a = np.arange(256, dtype=np.uint8).reshape(1, 16, 16).repeat(3, 0).transpose(1, 2, 0)  # (16, 16, 3)
    x = from_uint8(a)
    assert x.shape == (3, 16, 16) and x.dtype == torch.float32
    assert x.min() == -1 and x.max() == 1
    np.testing.assert_array_equal(to_uint8(x), a)


def test_to_uint8_rounds_clips_and_moves_channels_last():
    x = torch.zeros(2, 3, 4, 5)
    x[1, :, 2, 3] = torch.tensor([-3.0, 2.0, 0.5])
    out = to_uint8(x)
    assert out.shape == (2, 4, 5, 3) and out.dtype == np.uint8
    assert out[0, 0, 0].tolist() == [128, 128, 128]  # 127.5 rounds half to even
    assert out[1, 2, 3].tolist() == [0, 255, 191]  # clipped, clipped, 191.25 rounded


def test_center_crop_resize_keeps_the_central_square():
    img = Image.new("RGB", (300, 100), "blue")
    img.paste((255, 0, 0), (100, 0, 200, 100))
    out = center_crop_resize(img, 50)
    assert out.size == (50, 50)
    assert (np.asarray(out) == [255, 0, 0]).all()


# --- celeba ----------------------------------------------------------------------------------

_PARTITION = {"000001.jpg": 0, "000002.jpg": 0, "000003.jpg": 1, "000004.jpg": 0, "000005.jpg": 2}


def _coordinate_image() -> Image.Image:
    """178x218 image whose pixel (x, y) is (x, y, 0), so a crop reveals where it came from."""
    y, x = np.mgrid[0:218, 0:178]
    return Image.fromarray(np.stack([x, y, np.zeros_like(x)], axis=-1).astype(np.uint8))


@pytest.fixture
def celeba_root(tmp_path):
    images = tmp_path / "celeba" / "img_align_celeba"
    images.mkdir(parents=True)
    for name in _PARTITION:
        _coordinate_image().save(images / name, quality=100, subsampling=0)
    lines = [f"{name} {code}" for name, code in _PARTITION.items()]
    (tmp_path / "celeba" / "list_eval_partition.txt").write_text("\n".join(lines) + "\n")
    return tmp_path


def test_celeba_splits_follow_the_partition_file(celeba_root):
    sizes = {
        s: len(build_dataset("celeba", root=celeba_root, split=s)) for s in ("train", "valid", "test", "all")
    }
    assert sizes == {"train": 3, "valid": 1, "test": 1, "all": 5}
    train = build_dataset("celeba", root=celeba_root, split="train")
    assert [p.name for p in train.paths] == ["000001.jpg", "000002.jpg", "000004.jpg"]


def test_celeba_root_may_be_the_celeba_folder_itself(celeba_root):
    a = build_dataset("celeba", root=celeba_root, split="all")
    b = build_dataset("celeba", root=celeba_root / "celeba", split="all")
    assert a.paths == b.paths


def test_celeba_crops_the_study_box(celeba_root):
    left, top, right, bottom = CELEBA_BOX
    assert (right - left, bottom - top) == (148, 148)
    x = build_dataset("celeba", root=celeba_root, split="test", resolution=148)[0]
    assert x.shape == (3, 148, 148) and x.dtype == torch.float32
    img = to_uint8(x).astype(int)  # (148, 148, 3); pixel (i, j) came from (x=15+j, y=40+i)
    cols, rows = np.meshgrid(np.arange(148), np.arange(148))
    dx, dy = img[..., 0] - (cols + 15), img[..., 1] - (rows + 40)  # JPEG error only: |e| <= 3, mean ~0
    assert np.abs(dx).max() <= 3 and np.abs(dy).max() <= 3
    assert abs(dx.mean()) < 0.3 and abs(dy.mean()) < 0.3  # a box one pixel off gives a mean of 1


def test_celeba_resizes_to_the_resolution_in_range(celeba_root):
    x = build_dataset("celeba", root=celeba_root, split="train", resolution=64)[1]
    assert x.shape == (3, 64, 64)
    assert x.min() >= -1 and x.max() <= 1
    # The middle of the 148 box is (x=89, y=114); bilinear keeps the ramp linear.
    mid = to_uint8(x)[32, 32].astype(int)
    assert abs(mid[0] - 89.5) <= 2 and abs(mid[1] - 114.5) <= 2


def test_celeba_random_flip_mirrors_some_reads(celeba_root):
    plain = build_dataset("celeba", root=celeba_root, split="test", resolution=32)[0]
    flipping = build_dataset("celeba", root=celeba_root, split="test", resolution=32, random_flip=True)
    torch.manual_seed(0)
    reads = [flipping[0] for _ in range(20)]
    flipped = [bool(torch.equal(r, plain.flip(-1))) for r in reads]
    assert all(f or torch.equal(r, plain) for r, f in zip(reads, flipped))
    assert 0 < sum(flipped) < 20


def test_celeba_missing_folder_says_where_to_put_the_files(tmp_path):
    with pytest.raises(UserError) as err:
        build_dataset("celeba", root=tmp_path)
    msg = str(err.value)
    assert str(tmp_path) in msg
    assert "celeba/img_align_celeba" in msg and "list_eval_partition.txt" in msg and "--data-dir" in msg
    with pytest.raises(UserError, match="--data-dir"):
        build_dataset("celeba")


def test_celeba_missing_partition_file_is_named(celeba_root):
    (celeba_root / "celeba" / "list_eval_partition.txt").unlink()
    with pytest.raises(UserError, match="partition file missing.*list_eval_partition.txt"):
        build_dataset("celeba", root=celeba_root)


def test_celeba_listed_image_missing_is_named(celeba_root):
    (celeba_root / "celeba" / "img_align_celeba" / "000002.jpg").unlink()
    with pytest.raises(UserError, match="1 of the 3 train images.*000002.jpg"):
        build_dataset("celeba", root=celeba_root, split="train")
    assert len(build_dataset("celeba", root=celeba_root, split="valid")) == 1


def test_celeba_malformed_partition_line_names_the_line(celeba_root):
    partition = celeba_root / "celeba" / "list_eval_partition.txt"
    partition.write_text("000001.jpg 0\n000002.jpg train\n")
    with pytest.raises(UserError, match=r"list_eval_partition.txt:2:"):
        build_dataset("celeba", root=celeba_root)


# --- folder ----------------------------------------------------------------------------------


@pytest.fixture
def image_folder(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    Image.new("RGBA", (40, 30), (255, 0, 0, 0)).save(tmp_path / "a" / "1.png")  # fully transparent
    Image.new("L", (20, 50), 100).save(tmp_path / "a" / "b" / "2.JPG", quality=100)
    Image.new("RGB", (16, 16), (10, 200, 30)).save(tmp_path / "3.webp", lossless=True)
    Image.new("RGB", (24, 24), (0, 0, 255)).convert("P").save(tmp_path / "4.bmp")
    (tmp_path / "bad.png").write_text("not an image")
    (tmp_path / "notes.txt").write_text("ignored: not an image extension")
    return tmp_path


def test_folder_reads_nested_images_of_any_mode_and_skips_bad_ones(image_folder, capsys):
    ds = build_dataset("folder", root=image_folder, resolution=8)
    err = capsys.readouterr().err
    assert "skipped 1 unreadable image(s)" in err and "bad.png" in err
    assert [p.relative_to(image_folder).as_posix() for p in ds.paths] == [
        "3.webp",
        "4.bmp",
        "a/1.png",
        "a/b/2.JPG",
    ]
    pixels = [to_uint8(ds[i])[4, 4].tolist() for i in range(len(ds))]
    assert pixels[0] == [10, 200, 30]
    assert pixels[1] == [0, 0, 255]
    assert pixels[2] == [255, 255, 255]  # transparency composited onto white
    assert all(abs(v - 100) <= 1 for v in pixels[3])  # grayscale -> equal channels
    assert all(ds[i].shape == (3, 8, 8) for i in range(len(ds)))


def test_folder_splits_all_mean_the_whole_folder(image_folder):
    lengths = {
        len(build_dataset("folder", root=image_folder, split=s)) for s in ("train", "valid", "test", "all")
    }
    assert lengths == {4}


def test_folder_without_usable_images_is_a_user_error(tmp_path, capsys):
    with pytest.raises(UserError, match="no usable images"):
        build_dataset("folder", root=tmp_path)
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 truncated")
    with pytest.raises(UserError, match="no usable images"):
        build_dataset("folder", root=tmp_path)
    assert "broken.jpg" in capsys.readouterr().err
    with pytest.raises(UserError, match="not found"):
        build_dataset("folder", root=tmp_path / "nope")


# --- synthetic faces and the registry --------------------------------------------------------


def test_synthetic_splits_are_fixed_disjoint_ranges():
    lengths = {
        s: len(build_dataset("synthetic-faces", split=s, resolution=16)) for s in ("train", "valid", "test")
    }
    assert lengths == {"train": 50_000, "valid": 1_000, "test": 1_000}
    for split, first in (("train", 0), ("valid", 50_000), ("test", 51_000)):
        x = build_dataset("synthetic-faces", split=split, resolution=16, seed=2)[0]
        assert torch.equal(x, from_uint8(draw_face(first, 16, seed=2)))
    assert torch.equal(
        build_dataset("synthetic-faces", split="all", resolution=16)[51_000],
        from_uint8(draw_face(51_000, 16)),
    )


def test_synthetic_dataset_is_iterable_and_checks_resolution():
    assert len(list(SyntheticFaces(start=3, length=2, resolution=16))) == 2
    with pytest.raises(UserError, match="resolution >= 16"):
        build_dataset("synthetic-faces", resolution=8)


def test_unknown_name_or_split_lists_the_valid_ones():
    with pytest.raises(UserError, match="celeba, celeba32, cifar10, folder, synthetic-faces"):
        build_dataset("imagenet")
    assert list(DATASETS) == ["celeba", "celeba32", "cifar10", "folder", "synthetic-faces"]
    with pytest.raises(UserError, match="train, valid, test, all"):
        build_dataset("synthetic-faces", split="val")


def test_first_n_stacks_and_refuses_more_than_there_are():
    ds = SyntheticFaces(start=0, length=3, resolution=16)
    batch = first_n(ds, 2)
    assert batch.shape == (2, 3, 16, 16)
    assert torch.equal(batch[1], ds[1])
    with pytest.raises(UserError, match="asked for 5 images but the dataset has only 3"):
        first_n(ds, 5)


# --- load_images -----------------------------------------------------------------------------


def test_load_images_crops_resizes_and_converts(tmp_path):
    wide = Image.new("RGB", (60, 20), "blue")
    wide.paste((255, 0, 0), (20, 0, 40, 20))
    wide.save(tmp_path / "wide.png")
    Image.new("LA", (10, 10), (50, 255)).save(tmp_path / "gray.png")
    x = load_images([tmp_path / "wide.png", str(tmp_path / "gray.png")], 12)
    assert x.shape == (2, 3, 12, 12) and x.dtype == torch.float32
    out = to_uint8(x)
    assert (out[0] == [255, 0, 0]).all()
    assert (out[1] == [50, 50, 50]).all()


def test_load_images_names_the_bad_path(tmp_path):
    text = tmp_path / "face.jpg"
    text.write_text("hello")
    with pytest.raises(UserError, match="not a readable image: .*face.jpg"):
        load_images([text], 16)
    with pytest.raises(UserError, match="image not found: .*missing.png"):
        load_images([tmp_path / "missing.png"], 16)
    with pytest.raises(UserError, match="no image paths"):
        load_images([], 16)


@pytest.mark.parametrize("name", ["synthetic-faces"])
def test_a_folder_for_a_dataset_that_reads_none_is_an_error(tmp_path, name):
    # it used to be ignored: the run drew synthetic faces while the user thought it read their folder
    with pytest.raises(
        UserError, match=f"the {name} dataset reads no folder, but --data-dir {tmp_path} was given"
    ):
        build_dataset(name, root=tmp_path)
    assert len(build_dataset(name, root=None, split="test")) == 1000


@pytest.mark.parametrize("kind", ["16-bit png", "float tiff"])
def test_high_bit_depth_images_are_scaled_by_their_range_not_clipped(tmp_path, kind):
    # Both used to come out white: PIL's convert("RGB") clips I;16 and F values at 255.
    ramp = np.linspace(0, 1, 32 * 32).reshape(32, 32)
    if kind == "16-bit png":
        path, data = tmp_path / "deep.png", (ramp * 65535).round().astype(np.uint16)
    else:
        path, data = tmp_path / "deep.tif", ramp.astype(np.float32)
    Image.fromarray(data).save(path)
    assert Image.open(path).mode == ("I;16" if kind == "16-bit png" else "F")
    rgb = np.asarray(open_rgb(path), dtype=np.float64)
    assert rgb.shape == (32, 32, 3) and (rgb[..., 0] == rgb[..., 2]).all()
    np.testing.assert_allclose(rgb[..., 0], ramp * 255, atol=0.51)


# --- the study's other datasets: celeba32 and cifar10, read from disk, never downloaded -------


def test_celeba32_reads_the_celeba_files_at_the_given_resolution(celeba_root):
    a = build_dataset("celeba32", root=celeba_root, split="test", resolution=32)
    b = build_dataset("celeba", root=celeba_root, split="test", resolution=32)
    assert a.paths == b.paths and a[0].shape == (3, 32, 32)
    assert torch.equal(a[0], b[0])


def _cifar_batch(path, images: np.ndarray, *, protocol: int = 2) -> None:
    """A batch as the CIFAR-10 python release holds it: a pickled dict, 'data' (N, 3072) uint8."""
    import pickle

    labels = list(range(len(images)))
    batch = {b"batch_label": b"x", b"labels": labels, b"data": images.reshape(len(images), -1)}
    path.write_bytes(pickle.dumps(batch, protocol=protocol))


@pytest.fixture
def cifar_root(tmp_path):
    base = tmp_path / "cifar-10-batches-py"
    base.mkdir()
    rng = np.random.default_rng(0)
    for i in range(1, 6):
        _cifar_batch(base / f"data_batch_{i}", rng.integers(0, 256, (2, 3, 32, 32), dtype=np.uint8))
    test = rng.integers(0, 256, (3, 3, 32, 32), dtype=np.uint8)
    _cifar_batch(base / "test_batch", test)
    return tmp_path, test


def test_cifar10_reads_the_python_release_by_split(cifar_root):
    root, test = cifar_root
    splits = ("train", "test", "all")
    sizes = {s: len(build_dataset("cifar10", root=root, split=s, resolution=32)) for s in splits}
    assert sizes == {"train": 10, "test": 3, "all": 13}
    x = build_dataset("cifar10", root=root, split="test", resolution=32)[2]
    # channel planes in order, scaled to [-1, 1] exactly as from_uint8 does
    assert torch.equal(x, from_uint8(test[2].transpose(1, 2, 0)))
    inner = build_dataset("cifar10", root=root / "cifar-10-batches-py", split="test", resolution=32)
    assert torch.equal(inner[2], x)
    assert build_dataset("cifar10", root=root, split="test", resolution=16)[0].shape == (3, 16, 16)


def test_cifar10_absent_is_one_line_naming_the_layout(tmp_path):
    with pytest.raises(UserError, match="CIFAR-10 not found under .*cifar-10-batches-py/test_batch"):
        build_dataset("cifar10", root=tmp_path, split="test", resolution=32)
    with pytest.raises(UserError, match="never downloaded"):
        build_dataset("cifar10", root=None, split="test", resolution=32)


def test_cifar10_batch_that_would_run_code_is_refused(cifar_root):
    import os
    import pickle

    root, _ = cifar_root

    class Boom:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    (root / "cifar-10-batches-py" / "test_batch").write_bytes(pickle.dumps({b"data": Boom()}))
    with pytest.raises(UserError, match=r"test_batch is not a batch of the python release .*system"):
        build_dataset("cifar10", root=root, split="test", resolution=32)
