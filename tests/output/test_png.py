import io
import os

import numpy as np
import pytest
from PIL import Image

from ddpm_lens.output.png import encode_png, read_png_text, write_png


def test_png_round_trip_is_exact():
    array = np.random.default_rng(1).integers(0, 256, (13, 17, 3), dtype=np.uint8)
    for level in (0, 1, 9):
        decoded = np.asarray(Image.open(io.BytesIO(encode_png(array, compress_level=level))))
        np.testing.assert_array_equal(decoded, array)
    for other in (array[:, :, 0], np.dstack([array, array[:, :, :1]])):  # grey and RGBA
        with Image.open(io.BytesIO(encode_png(other))) as im:
            im.load()
            np.testing.assert_array_equal(np.asarray(im), other)


def test_write_png_replaces_atomically_and_leaves_no_temp_files(tmp_path, monkeypatch):
    path = tmp_path / "fig.png"
    path.write_bytes(b"old")
    array = np.random.default_rng(2).integers(0, 256, (5, 6, 3), dtype=np.uint8)
    write_png(path, array)
    np.testing.assert_array_equal(np.asarray(Image.open(path)), array)
    assert os.listdir(tmp_path) == ["fig.png"]

    def failing_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        write_png(path, np.zeros((2, 2, 3), dtype=np.uint8))
    assert os.listdir(tmp_path) == ["fig.png"]
    np.testing.assert_array_equal(np.asarray(Image.open(path)), array)  # the old file survives


def test_encode_png_rejects_float_arrays():
    with pytest.raises(ValueError, match="uint8"):
        encode_png(np.zeros((2, 2, 3)))


def test_text_chunks_are_written_read_back_and_seen_by_pil(tmp_path):
    array = np.random.default_rng(2).integers(0, 256, (5, 7), dtype=np.uint8)
    path = tmp_path / "t.png"
    palette = np.zeros((256, 3), dtype=np.uint8)
    write_png(path, array, palette=palette, text={"ddpm-lens run": "abc123"})
    assert read_png_text(path) == {"ddpm-lens run": "abc123"}
    with Image.open(path) as im:
        assert im.text == {"ddpm-lens run": "abc123"}
        np.testing.assert_array_equal(np.asarray(im), array)
    (tmp_path / "plain.png").write_bytes(encode_png(array))
    assert read_png_text(tmp_path / "plain.png") == {}
    (tmp_path / "no.png").write_bytes(b"not a png")
    assert read_png_text(tmp_path / "no.png") == {}
