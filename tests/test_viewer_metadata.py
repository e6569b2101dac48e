"""Metadata that viewers rely on: percentile display windows and pyramid translations."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import zarr
from hypothesis import example, given, settings
from hypothesis import strategies as st
from ome_images import write_image
from ome_zarr_models import open_ome_zarr

from volumetric.engine import RunOptions
from volumetric.io.intensity import display_windows
from volumetric.io.ome import ImageMeta, LevelSpec, create_image, finalize_image, open_image
from volumetric.ops.convert import convert


def _attrs(path: Path) -> dict:
    if (path / "zarr.json").exists():
        return json.loads((path / "zarr.json").read_text())["attributes"]["ome"]
    attrs = json.loads((path / ".zattrs").read_text())
    return {"multiscales": attrs["multiscales"], "omero": attrs["omero"]}


@pytest.mark.parametrize("ngff", ["0.5", "0.4"])
def test_a_12_bit_recording_gets_its_percentile_window(client, tmp_path, ngff):
    data = np.random.default_rng(0).integers(0, 4096, size=(2, 12, 40, 40), dtype=np.uint16)
    data[1] //= 16
    src = write_image(tmp_path / "src.zarr", data, axes="czyx", chunks=(1, 6, 20, 20))
    dst = tmp_path / "dst.zarr"
    convert(src, str(dst), ngff=ngff, levels=2, chunks=(6, 20, 20),
            run=RunOptions(client=client, progress=False))
    windows = [ch["window"] for ch in _attrs(dst)["omero"]["channels"]]
    for channel, window in zip(data, windows):  # 8 chunks per channel: all read
        start, end = np.percentile(channel, (0.1, 99.9))
        assert window == {"min": 0.0, "max": 65535.0, "start": start, "end": end}
    assert windows[0]["end"] < 4096 and windows[1]["end"] < 256
    model = open_ome_zarr(str(dst))
    assert type(model).__module__.startswith(f"ome_zarr_models.v0{ngff[-1]}")


def test_windows_of_floats_masks_and_infinite_maps(tmp_path):
    dist = np.full((4, 8, 8), np.inf, np.float32)
    dist[0, 0, :4] = [0.0, 1.0, 2.0, 3.0]
    write_image(tmp_path / "d.zarr", dist)
    window = _attrs(tmp_path / "d.zarr")["omero"]["channels"][0]["window"]
    assert window["min"] == 0.0 and window["max"] == 3.0 and 0 <= window["start"] < window["end"]
    mask = np.zeros((10, 20, 20), np.uint8)  # 2 voxels of 4000 set: under the 99.9th percentile
    mask[0, 0, :2] = 1
    write_image(tmp_path / "m.zarr", mask)
    window = _attrs(tmp_path / "m.zarr")["omero"]["channels"][0]["window"]
    assert window == {"min": 0.0, "max": 255.0, "start": 0.0, "end": 1.0}
    assert type(open_ome_zarr(str(tmp_path / "m.zarr"))).__module__.startswith(
        "ome_zarr_models.v05")


def _coordinates(shape, voxel, origin) -> np.ndarray:
    """Three channels holding each voxel centre's physical z, y and x."""
    grids = np.meshgrid(*[o + v * np.arange(n) for n, v, o in zip(shape, voxel, origin)],
                        indexing="ij")
    return np.stack(grids).astype(np.float32)


@pytest.mark.parametrize("ngff", ["0.5", "0.4"])
@pytest.mark.parametrize("method", ["mean", "nearest"])
def test_pyramid_levels_place_their_voxels_where_the_data_lies(client, tmp_path, method, ngff):
    shape, voxel, origin = (8, 32, 48), (2.0, 1.0, 0.5), (5.0, -3.0, 10.0)
    src = tmp_path / "src.zarr"
    meta = ImageMeta("czyx", voxel, "micrometer", origin=origin)
    data = _coordinates(shape, voxel, origin)
    create_image(src, meta, [LevelSpec("0", data.shape, (1,) * 4)], dtype=np.float32,
                 chunks=(1, 8, 16, 16))
    zarr.open_array(str(src / "0"), mode="r+")[...] = data
    finalize_image(src)
    dst = tmp_path / "dst.zarr"
    convert(str(src), str(dst), levels=3, ngff=ngff, downsampling=method, chunks=(4, 8, 8),
            run=RunOptions(client=client, progress=False, block_bytes=4096))
    datasets = _attrs(dst)["multiscales"][0]["datasets"]
    factors = []
    for dataset in datasets:
        transforms = {t["type"]: t for t in dataset["coordinateTransformations"]}
        scale = transforms["scale"]["scale"][1:]
        translation = transforms["translation"]["translation"][1:]
        level = zarr.open_array(str(dst / dataset["path"]), mode="r")[:]
        expected = _coordinates(level.shape[1:], scale, translation)
        np.testing.assert_allclose(level, expected, rtol=0, atol=1e-4)
        factors.append(tuple(round(s / v) for s, v in zip(scale, voxel)))
    assert factors[0] == (1, 1, 1) and max(factors[-1]) == 4
    assert type(open_ome_zarr(str(dst))).__module__.startswith(f"ome_zarr_models.v0{ngff[-1]}")


@pytest.mark.parametrize("ngff", ["0.5", "0.4"])
def test_written_metadata_validates_and_reads_back(tmp_path, ngff):
    meta = ImageMeta("tczyx", (2.0, 1.0, 0.5), "um", channel_names=("dna", "actin"),
                     time_step=0.5, time_unit="s", name="cells", origin=(1.0, 2.0, 3.0))
    shape = (2, 2, 4, 8, 8)
    levels = [LevelSpec("0", shape, (1,) * 5), LevelSpec("1", (2, 2, 4, 4, 4), (1, 1, 1, 2, 2))]
    create_image(tmp_path / "a.zarr", meta, levels, dtype=np.uint8, chunks=shape, ngff=ngff)
    finalize_image(tmp_path / "a.zarr")
    model = open_ome_zarr(str(tmp_path / "a.zarr"))
    assert [a.unit for a in model.ome_attributes.multiscales[0].axes] == [
        "second", None, "micrometer", "micrometer", "micrometer"]
    image = open_image(tmp_path / "a.zarr")
    assert image.meta == meta and image.levels == levels and image.ngff == ngff


@pytest.mark.parametrize("multiscale, voxel, origin", [
    ({"version": "0.3", "axes": ["z", "y", "x"], "datasets": [{"path": "0"}]},
     (1.0, 1.0, 1.0), (0.0, 0.0, 0.0)),
    ({"version": "0.4", "axes": [{"name": "z"}, {"name": "y"}, {"name": "x"}],
      "datasets": [{"path": "0", "coordinateTransformations": [
          {"type": "scale", "scale": [3.0, 2.0, 1.0]},
          {"type": "translation", "translation": [1.0, 0.0, 0.0]}]}],
      "coordinateTransformations": [{"type": "scale", "scale": [2.0, 1.0, 1.0]}]},
     (6.0, 2.0, 1.0), (2.0, 0.0, 0.0)),
])
def test_foreign_metadata_the_models_refuse_still_opens(tmp_path, multiscale, voxel, origin):
    group = zarr.create_group(str(tmp_path / "f.zarr"), zarr_format=2,
                              attributes={"multiscales": [multiscale]})
    group.create_array("0", shape=(2, 3, 4), dtype=np.uint8)
    image = open_image(tmp_path / "f.zarr")
    assert image.meta.axes == "zyx" and image.shape == (2, 3, 4)
    assert image.meta.voxel_size == voxel and (image.meta.origin or (0.0,) * 3) == origin


@settings(max_examples=40, deadline=None)
@given(st.sampled_from(["int8", "uint8", "int16", "uint16", "int32", "uint32", "int64"]),
       st.integers(1, 3000), st.integers(0, 2**16))
@example(dtype="int32", size=2, seed=2)  # neighbours 4e9 apart: their difference wraps in int32
def test_integer_windows_equal_those_of_the_values_as_float64(dtype, size, seed):
    info = np.iinfo(dtype)
    values = np.random.default_rng(seed).integers(info.min, info.max, size, dtype=dtype,
                                                  endpoint=True)
    (ours,) = display_windows(values)
    (as_float,) = display_windows(values.astype(np.float64))
    assert (ours["start"], ours["end"]) == (as_float["start"], as_float["end"])
    assert (ours["min"], ours["max"]) == (float(info.min), float(info.max))
