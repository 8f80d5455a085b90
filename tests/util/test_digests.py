"""File digests: the same SHA-256 as hashlib over the bytes, for big, empty and folder inputs."""

import hashlib

from ddpm_lens.util.digests import FileDigests, sha256_of


def test_a_file_hashes_as_its_bytes(tmp_path):
    data = bytes(range(256)) * 40_000 + b"tail"  # ~10 MB: more than one read block
    (tmp_path / "model.pt").write_bytes(data)
    (tmp_path / "empty.pt").write_bytes(b"")  # cannot be memory-mapped: read in blocks
    assert sha256_of(tmp_path / "model.pt") == hashlib.sha256(data).hexdigest()
    assert sha256_of(tmp_path / "empty.pt") == hashlib.sha256(b"").hexdigest()


def test_a_folder_hashes_its_files_paths_and_bytes_in_order(tmp_path):
    (tmp_path / "unet").mkdir()
    (tmp_path / "unet" / "config.json").write_bytes(b"{}")
    (tmp_path / "unet" / "weights.safetensors").write_bytes(b"\x01" * 5000)
    expected = hashlib.sha256(
        b"config.json\0" + b"{}" + b"weights.safetensors\0" + b"\x01" * 5000
    ).hexdigest()
    assert sha256_of(tmp_path / "unet") == expected
    (tmp_path / "unet" / "config.json").write_bytes(b"{ }")
    assert sha256_of(tmp_path / "unet") != expected


def test_background_digests_match_and_a_missing_file_holds_its_error(tmp_path):
    (tmp_path / "a.pt").write_bytes(b"abc")
    digests = FileDigests([tmp_path / "a.pt"])
    try:
        assert digests.future(tmp_path / "a.pt").result() == hashlib.sha256(b"abc").hexdigest()
        missing = digests.future(tmp_path / "gone.pt")
        assert isinstance(missing.exception(), OSError)
    finally:
        digests.close()
