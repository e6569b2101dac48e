"""open_source picks the reader from the path: suffix, folder kind or glob pattern."""

from __future__ import annotations

import json

import h5py
import imageio.v3 as iio
import numpy as np
import pytest
import tifffile
import zarr
from source_checks import assert_one_line_failure

from volumetric.errors import InputError
from volumetric.geometry import Box
from volumetric.io.sources import ImageStack, TiffSource, ZarrSource, open_source

PLANE = np.arange(12 * 16, dtype=np.uint8).reshape(12, 16)


@pytest.mark.parametrize("name", ["a.ome.tif", "a.ome.tiff", "a.tif", "a.TIFF", "a.btf"])
def test_tiff_suffixes(tmp_path, name):
    tifffile.imwrite(tmp_path / name, PLANE, bigtiff=name.endswith(".btf"))
    source = open_source(str(tmp_path / name))
    assert isinstance(source, TiffSource) and source.shape == PLANE.shape


def test_folders_and_patterns(tmp_path):
    zarr.open_array(tmp_path / "array.zarr", mode="w", shape=(4, 12, 16), dtype="uint8")
    (tmp_path / "scans").mkdir()
    for i in range(3):
        iio.imwrite(tmp_path / "scans" / f"s{i}.png", PLANE)
    assert isinstance(open_source(str(tmp_path / "array.zarr")), ZarrSource)
    folder = open_source(str(tmp_path / "scans"))
    pattern = open_source(str(tmp_path / "scans" / "s[01].png"))
    assert isinstance(folder, ImageStack) and folder.shape == (3, 12, 16)
    assert isinstance(pattern, ImageStack) and pattern.shape == (2, 12, 16)


def test_unknown_format(tmp_path, vol):
    (tmp_path / "volume.xyz").write_bytes(b"\x00" * 64)
    dst = tmp_path / "out.zarr"
    result = vol("convert", tmp_path / "volume.xyz", dst)
    assert_one_line_failure(result, vol, dst, mentions="volume.xyz: unknown input format")
    assert not dst.exists()


def test_hdf5_dataset_named_in_the_path(tmp_path):
    raw, mask = np.arange(2 * 12 * 16, dtype=np.uint16).reshape(2, 12, 16), np.ones((2, 12, 16))
    with h5py.File(tmp_path / "pair.h5", "w") as f:
        f["raw"], f["labels/mask"] = raw, mask
    with pytest.raises(InputError, match=r"choose one with --dataset or in the path \(.*pair.h5/"):
        open_source(str(tmp_path / "pair.h5"))
    by_path = open_source(str(tmp_path / "pair.h5" / "raw"))
    nested = open_source(str(tmp_path / "pair.h5" / "labels" / "mask"))
    np.testing.assert_array_equal(by_path.read(Box((0, 0, 0), raw.shape)), raw)
    np.testing.assert_array_equal(nested.read(Box((0, 0, 0), raw.shape)), mask)
    assert by_path.identity() != nested.identity()
    with pytest.raises(InputError, match="no dataset or group"):
        open_source(str(tmp_path / "pair.h5" / "missing"))


def test_damaged_hdf5_chunk_is_one_line_naming_file_and_block(tmp_path, vol):
    data = np.arange(8 * 32 * 32, dtype=np.uint16).reshape(8, 32, 32)
    path = tmp_path / "gz.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("raw", data=data, chunks=(4, 16, 16), compression="gzip")
        info = f["raw"].id.get_chunk_info(3)
    with open(path, "r+b") as f:
        f.seek(info.byte_offset)
        f.write(b"\xff" * info.size)
    dst = tmp_path / "out.zarr"
    result = vol("convert", path, dst, "--chunks", "4,16,16", "--block-mb", "0.001")
    assert result.exit_code == 2 and "Traceback" not in result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("vol: error")]
    assert len(errors) == 1 and f"{path}: cannot read [0:4, 16:32, 16:32]" in errors[0]
    assert json.loads(vol("info", dst, "--json").stdout)["complete"] is False


def test_file_removed_after_opening_is_an_input_error(tmp_path):
    np.save(tmp_path / "a.npy", np.zeros((4, 6, 8), np.uint8))
    source = open_source(str(tmp_path / "a.npy"))
    (tmp_path / "a.npy").unlink()
    with pytest.raises(InputError, match=r"a.npy: cannot read \[0:2, 0:6, 0:8\]"):
        source.read(Box((0, 0, 0), (2, 6, 8)))
