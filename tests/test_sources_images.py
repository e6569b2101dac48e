"""Folders and glob patterns of 2D images stacked along z, and single images."""

from __future__ import annotations

import imageio.v3 as iio
import numpy as np
import pytest
import tifffile
from source_checks import assert_one_line_failure, convert_and_check

from volumetric.errors import InputError
from volumetric.geometry import Box
from volumetric.io.sources import ImageStack, open_source

rng = np.random.default_rng(3)


def _write_slices(folder, stack, suffix):
    """Write slice i as img_<i><suffix>, so plain string order would be wrong."""
    folder.mkdir(exist_ok=True)
    for i, plane in enumerate(stack):
        if suffix == ".tif":
            tifffile.imwrite(folder / f"img_{i}{suffix}", plane)
        else:
            iio.imwrite(folder / f"img_{i}{suffix}", plane)


def test_png_folder_in_natural_order(tmp_path, client):
    stack = rng.integers(0, 255, (12, 30, 40), dtype=np.uint8)
    _write_slices(tmp_path / "scans", stack, ".png")
    (tmp_path / "scans" / "notes.txt").write_text("not an image")
    info = convert_and_check(tmp_path / "scans", tmp_path / "out.zarr", stack, client,
                             chunks=(4, 16, 16))
    assert info["axes"] == "zyx"


def test_rgb_glob_gets_a_channel_axis(tmp_path, client):
    stack = rng.integers(0, 255, (5, 20, 30, 3), dtype=np.uint8)
    _write_slices(tmp_path / "scans", stack, ".png")
    iio.imwrite(tmp_path / "scans" / "other.bmp", stack[0])
    info = convert_and_check(str(tmp_path / "scans" / "*.png"), tmp_path / "out.zarr",
                             np.moveaxis(stack, -1, 0), client, chunks=(2, 8, 16))
    assert info["axes"] == "czyx"


def test_tiff_folder_as_time_series(tmp_path, client):
    stack = rng.integers(0, 60000, (6, 30, 40), dtype=np.uint16)
    _write_slices(tmp_path / "frames", stack, ".tif")
    info = convert_and_check(tmp_path / "frames", tmp_path / "out.zarr", stack, client,
                             chunks=(2, 16, 16), axes="tyx")
    assert info["axes"] == "tyx"


def test_single_image_is_2d(tmp_path, client):
    plane = rng.integers(0, 60000, (40, 50), dtype=np.uint16)
    iio.imwrite(tmp_path / "plane.png", plane)
    info = convert_and_check(tmp_path / "plane.png", tmp_path / "out.zarr", plane, client,
                             chunks=(16, 16))
    assert info["axes"] == "yx"


def test_reads_only_the_files_of_its_planes(tmp_path):
    stack = rng.integers(0, 255, (6, 10, 12), dtype=np.uint8)
    _write_slices(tmp_path / "scans", stack, ".png")
    source = open_source(str(tmp_path / "scans"))
    (tmp_path / "scans" / "img_5.png").write_bytes(b"damaged")
    np.testing.assert_array_equal(source.read(Box((0, 2, 3), (5, 9, 12))), stack[:5, 2:9, 3:])
    with pytest.raises(InputError, match="img_5.png: cannot read"):
        source.read(Box((4, 0, 0), (6, 10, 12)))


def test_mismatched_shapes_name_the_file(tmp_path, vol):
    stack = rng.integers(0, 255, (4, 20, 30), dtype=np.uint8)
    _write_slices(tmp_path / "scans", stack, ".png")
    iio.imwrite(tmp_path / "scans" / "img_10.png", stack[0, :, :25])
    dst = tmp_path / "out.zarr"
    result = vol("convert", tmp_path / "scans", dst)
    assert_one_line_failure(result, vol, dst, mentions="img_10.png: shape (20, 25)")
    assert not dst.exists()


def test_axes_that_do_not_fit_the_images(tmp_path, vol):
    _write_slices(tmp_path / "scans", rng.integers(0, 255, (3, 8, 9, 3), dtype=np.uint8), ".png")
    dst = tmp_path / "out.zarr"
    result = vol("convert", tmp_path / "scans", dst, "--axes", "zyx")
    assert_one_line_failure(result, vol, dst, mentions="axes 'zyx' do not match")
    assert not dst.exists()


def test_empty_folder_and_pattern(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="holds no images"):
        ImageStack(str(tmp_path / "empty"))
    with pytest.raises(InputError, match="no files match"):
        open_source(str(tmp_path / "empty" / "*.png"))
