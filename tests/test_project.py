"""vol project: block-wise tree reductions against numpy on the whole array."""

from __future__ import annotations

import imageio.v3 as iio
import numpy as np
import pytest
import zarr

from image_files import write_image
from volumetric.engine import RunOptions
from volumetric.io.ome import open_image
from volumetric.ops.project import project

VOXEL = (3.0, 0.5, 0.25)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    rng = np.random.default_rng(5)
    data = rng.integers(0, 60000, size=(2, 19, 13, 18), dtype=np.uint16)
    path = tmp_path_factory.mktemp("project") / "stack.zarr"
    return data, write_image(path, data, voxel_size=VOXEL, chunks=(1, 4, 4, 8))


REFERENCE = {
    "max": lambda a, k: a.max(axis=k, keepdims=True),
    "min": lambda a, k: a.min(axis=k, keepdims=True),
    "sum": lambda a, k: a.sum(axis=k, keepdims=True, dtype=np.uint64),
    "mean": lambda a, k: a.mean(axis=k, keepdims=True, dtype=np.float64).astype(np.float32),
}


@pytest.mark.parametrize("mode", ["max", "mean", "min", "sum"])
@pytest.mark.parametrize("axis", ["z", "y", "x"])
def test_tree_reduction_equals_numpy(client, tmp_path, stack, mode, axis):
    data, path = stack
    k = "czyx".index(axis)
    report = project(path, str(tmp_path / "p.zarr"), axis=axis, mode=mode,
                     run=RunOptions(block_bytes=1, client=client, progress=False),
                     fan_in=2)
    assert report.levels >= 3  # partials of partials: a real tree
    out = zarr.open_array(str(tmp_path / "p.zarr" / "0"))[...]
    expected = REFERENCE[mode](data, k)
    assert out.shape == expected.shape and out.dtype == expected.dtype
    np.testing.assert_allclose(out, expected, rtol=1e-6)
    image = open_image(tmp_path / "p.zarr")
    assert image.meta.axes == "czyx" and image.meta.voxel_size == VOXEL and image.complete
    assert not (tmp_path / "p.zarr" / ".volumetric" / "partials").exists()


def test_time_series_and_float_sum(client, tmp_path):
    rng = np.random.default_rng(2)
    data = rng.random((3, 1, 9, 10, 11)).astype(np.float32)
    path = write_image(tmp_path / "ts.zarr", data, chunks=(1, 1, 2, 4, 4))
    project(path, str(tmp_path / "p.zarr"), mode="sum",
            run=RunOptions(block_bytes=1, client=client, progress=False))
    out = zarr.open_array(str(tmp_path / "p.zarr" / "0"))[...]
    assert out.shape == (3, 1, 1, 10, 11) and out.dtype == np.float64
    np.testing.assert_allclose(out, data.sum(axis=2, keepdims=True, dtype=np.float64), rtol=1e-12)


def test_cli_png_preview_has_channel_colours(vol, tmp_path):
    data = np.zeros((2, 6, 10, 12), dtype=np.uint8)
    data[0, 3, 2:4, 2:4] = 200  # channel 0 (green) only
    data[1, 1, 6:8, 8:10] = 200  # channel 1 (magenta) only
    path = write_image(tmp_path / "s.zarr", data, chunks=(1, 2, 5, 6))
    result = vol("project", path, tmp_path / "p.zarr", "--png", tmp_path / "p.png")
    assert result.exit_code == 0, result.output
    rgb = iio.imread(tmp_path / "p.png")
    assert rgb.shape == (10, 12, 3)
    assert rgb[2, 2].tolist() == [0, 255, 0] and rgb[6, 8].tolist() == [255, 0, 255]
    assert rgb[0, 0].tolist() == [0, 0, 0]


def test_cli_bad_axis(vol, tmp_path):
    path = write_image(tmp_path / "plane.zarr", np.ones((8, 8), np.uint8))
    result = vol("project", path, tmp_path / "p.zarr", "--axis", "z")
    assert result.exit_code == 2 and "cannot project along 'z'" in result.stderr
    assert not (tmp_path / "p.zarr").exists()


def test_cli_png_of_a_1d_projection_is_refused_before_writing(vol, tmp_path):
    path = write_image(tmp_path / "plane.zarr", np.ones((8, 8), np.uint8))
    result = vol("project", path, tmp_path / "p.zarr", "--axis", "y", "--png", tmp_path / "p.png")
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        "vol: error: --png needs a 2D projection; projecting yx along y leaves x"]
    assert not (tmp_path / "p.zarr").exists() and not (tmp_path / "p.png").exists()
