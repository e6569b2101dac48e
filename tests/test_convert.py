"""vol convert: HDF5 / npy / Zarr to OME-Zarr, pyramids, NGFF 0.4 and 0.5, shards."""

from __future__ import annotations

import json
import shutil

import h5py
import numpy as np
import pytest
import zarr
from ome_zarr_models import open_ome_zarr

from interruption import killed_before_completion
from volumetric.engine import RunOptions
from volumetric.io.ome import ImageMeta, LevelSpec, create_image
from volumetric.kernels.downsample import downsample
from volumetric.ops.common import default_chunks
from volumetric.ops.convert import convert
from volumetric.ops.info import image_info


@pytest.fixture
def volume():
    rng = np.random.default_rng(1)
    return rng.integers(0, 4000, size=(37, 50, 61), dtype=np.uint16)


def _h5(path, data, **attrs):
    with h5py.File(path, "w") as f:
        ds = f.create_dataset("raw", data=data, chunks=(8, 16, 16))
        ds.attrs.update(attrs)
    return str(path)


def test_hdf5_to_ome_zarr_with_pyramid(client, tmp_path, volume):
    src = _h5(tmp_path / "a.h5", volume, element_size_um=[3.0, 0.5, 0.5])
    dst = tmp_path / "a.zarr"
    report = convert(src, str(dst), chunks=(8, 16, 16), levels=3,
                     run=RunOptions(block_bytes=8 * 16 * 16 * 4, client=client, progress=False))
    assert report.blocks > 3
    np.testing.assert_array_equal(zarr.open_array(dst / "0")[:], volume)
    level1 = downsample(volume, (1, 2, 2))
    np.testing.assert_array_equal(zarr.open_array(dst / "1")[:], level1)
    np.testing.assert_array_equal(zarr.open_array(dst / "2")[:], downsample(level1, (1, 2, 2)))
    info = image_info(str(dst))
    assert info["axes"] == "zyx" and info["complete"] is True
    assert info["voxel_size"] == [3.0, 0.5, 0.5] and info["unit"] == "micrometer"
    assert info["chunks"] == [8, 16, 16]
    image = open_ome_zarr(str(dst))
    scales = [d.coordinateTransformations[0].scale for d in image.attributes.ome.multiscales[0].datasets]
    assert scales == [[3.0, 0.5, 0.5], [3.0, 1.0, 1.0], [3.0, 2.0, 2.0]]


def test_pyramid_tasks_read_within_the_block_budget(client, tmp_path, volume):
    src = _h5(tmp_path / "a.h5", volume)
    dst = tmp_path / "a.zarr"
    budget = 8 * 16 * 16 * 2 * 8
    run = RunOptions(block_bytes=budget, client=client, progress=False)
    with killed_before_completion():  # the journal, with its layout, stays
        convert(src, str(dst), chunks=(8, 16, 16), levels=3, run=run)
    layout = json.loads((dst / ".volumetric" / "layout.json").read_text())["layout"]
    for block, (_, _, factors) in zip(layout["blocks"][1:], layout["levels"][1:]):
        read = np.prod(block) * 2 ** sum(f > 1 for f in factors) * volume.itemsize
        assert read <= budget, (block, factors)
    level1 = downsample(volume, (2, 2, 2))
    np.testing.assert_array_equal(zarr.open_array(dst / "1")[:], level1)
    np.testing.assert_array_equal(zarr.open_array(dst / "2")[:], downsample(level1, (2, 2, 2)))


def test_levels_stop_once_nothing_shrinks(client, tmp_path, caplog):
    src = tmp_path / "tiny.npy"
    np.save(src, np.arange(8 * 32 * 32, dtype=np.uint16).reshape(8, 32, 32))
    with caplog.at_level("WARNING", logger="volumetric"):
        report = convert(str(src), str(tmp_path / "t.zarr"), levels=10,
                         run=RunOptions(client=client, progress=False))
    shapes = [lv.shape for lv in report.image.levels]
    assert shapes == [(8, 32, 32), (4, 16, 16), (2, 8, 8), (1, 4, 4), (1, 2, 2), (1, 1, 1)]
    assert "writing 6 pyramid levels, not 10" in caplog.text


def test_ngff_04_on_zarr_v2_reads_with_ome_zarr_py(client, tmp_path, volume):
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    src = tmp_path / "a.npy"
    np.save(src, volume)
    dst = tmp_path / "a.zarr"
    convert(str(src), str(dst), ngff="0.4", levels=2, chunks=(16, 16, 16),
            voxel_size=(2.0, 1.0, 1.0), unit="um", run=RunOptions(client=client, progress=False))
    assert (dst / ".zattrs").exists() and (dst / "0" / ".zarray").exists()
    assert type(open_ome_zarr(str(dst))).__module__.startswith("ome_zarr_models.v04")
    node = next(iter(Reader(parse_url(str(dst)))()))
    np.testing.assert_array_equal(np.asarray(node.data[0]), volume)
    assert node.metadata["coordinateTransformations"][0][0]["scale"] == [2.0, 1.0, 1.0]


def test_default_ngff_05_reads_with_ome_zarr_py(client, tmp_path, volume):
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    src = tmp_path / "a.npy"
    np.save(src, volume)
    dst = tmp_path / "a.zarr"
    convert(str(src), str(dst), levels=2, chunks=(16, 16, 16), voxel_size=(2.0, 1.0, 1.0),
            unit="um", run=RunOptions(client=client, progress=False))
    location = parse_url(str(dst))
    assert location.version == "0.5" and (dst / "0" / "zarr.json").exists()
    node = next(iter(Reader(location)()))
    assert len(node.data) == 2
    np.testing.assert_array_equal(np.asarray(node.data[0]), volume)
    assert [a["name"] for a in node.metadata["axes"]] == ["z", "y", "x"]
    assert {a["unit"] for a in node.metadata["axes"]} == {"micrometer"}
    assert node.metadata["coordinateTransformations"][0][0]["scale"] == [2.0, 1.0, 1.0]


def test_shards_and_compressor(client, tmp_path, volume):
    src = tmp_path / "a.npy"
    np.save(src, volume)
    dst = tmp_path / "a.zarr"
    convert(str(src), str(dst), chunks=(8, 16, 16), shards=(16, 32, 32), compressor="zstd:5",
            run=RunOptions(block_bytes=1, client=client, progress=False))
    arr = zarr.open_array(dst / "0")
    assert arr.shards == (16, 32, 32) and arr.chunks == (8, 16, 16)
    np.testing.assert_array_equal(arr[:], volume)
    assert image_info(str(dst))["codecs"] == ["sharding(bytes,zstd)"]


def test_frame_group_is_stacked_in_natural_order(client, tmp_path):
    rng = np.random.default_rng(2)
    frames = [rng.integers(0, 255, size=(2, 20, 24, 5), dtype=np.uint8) for _ in range(12)]
    with h5py.File(tmp_path / "f.h5", "w") as f:
        grp = f.create_group("frames")
        for i in (3, 10, 0, 2, 11, 1, 4, 5, 6, 7, 8, 9):
            grp.create_dataset(f"frame_{i}", data=frames[i])
    dst = tmp_path / "f.zarr"
    convert(str(tmp_path / "f.h5"), str(dst), axes="cxyz", chunks=(5, 8, 8),
            run=RunOptions(block_bytes=1000, client=client, progress=False))
    out = zarr.open_array(dst / "0")[:]
    assert image_info(str(dst))["axes"] == "tczyx"
    expected = np.stack([fr.transpose(0, 3, 2, 1) for fr in frames])  # c,x,y,z -> c,z,y,x
    np.testing.assert_array_equal(out, expected)


def test_zarr_input_is_rechunked_with_metadata(client, tmp_path, volume):
    src = _h5(tmp_path / "a.h5", volume, element_size_um=[3.0, 0.5, 0.5])
    first, second = tmp_path / "a.zarr", tmp_path / "b.zarr"
    convert(src, str(first), chunks=(8, 16, 16), run=RunOptions(client=client, progress=False))
    convert(str(first), str(second), chunks=(37, 25, 25),
            run=RunOptions(client=client, progress=False))
    np.testing.assert_array_equal(zarr.open_array(second / "0")[:], volume)
    info = image_info(str(second))
    assert info["chunks"] == [37, 25, 25] and info["voxel_size"] == [3.0, 0.5, 0.5]


def test_axes_on_an_ome_zarr_source_keep_its_metadata(client, tmp_path):
    data = np.arange(2 * 6 * 8 * 10, dtype=np.uint16).reshape(2, 6, 8, 10)
    np.save(tmp_path / "a.npy", data)
    first, second = tmp_path / "a.zarr", tmp_path / "b.zarr"
    convert(str(tmp_path / "a.npy"), str(first), voxel_size=(3.0, 0.5, 0.25), unit="um",
            run=RunOptions(client=client, progress=False))
    group = zarr.open_group(str(first), mode="r+")
    ome = group.attrs["ome"]
    for channel, name in zip(ome["omero"]["channels"], ("GFP", "RFP")):
        channel["label"] = name
    group.attrs["ome"] = ome
    convert(str(first), str(second), axes="czyx", chunks=(3, 4, 5),
            run=RunOptions(client=client, progress=False))
    info = image_info(str(second))
    assert info["voxel_size"] == [3.0, 0.5, 0.25] and info["unit"] == "micrometer"
    assert info["channels"] == ["GFP", "RFP"]
    np.testing.assert_array_equal(zarr.open_array(second / "0")[:], data)


def test_default_chunks_are_a_few_megabytes():
    chunks = default_chunks((4, 2, 300, 2048, 2048), "tczyx", "uint16")
    nbytes = 2 * int(np.prod(chunks))
    assert chunks[:2] == (1, 1) and 1 * 2**20 <= nbytes <= 4 * 2**20


def test_info_json_contract(vol, tmp_path, volume):
    src = _h5(tmp_path / "a.h5", volume)
    dst = tmp_path / "a.zarr"
    result = vol("convert", src, dst, "--voxel-size", "2,1,1", "--unit", "um")
    assert result.exit_code == 0, result.output
    result = vol("info", dst, "--json")
    data = json.loads(result.stdout)
    for key in ("axes", "shape", "dtype", "chunks", "voxel_size", "unit", "complete"):
        assert key in data
    assert data["axes"] == "zyx" and data["shape"] == [37, 50, 61]
    assert data["voxel_size"] == [2.0, 1.0, 1.0] and data["unit"] == "micrometer"
    assert data["complete"] is True and data["compression_ratio"] > 1


def test_info_reports_a_store_interrupted_before_its_arrays_existed(vol, tmp_path):
    dst = tmp_path / "o.zarr"
    levels = [LevelSpec("0", (4, 8, 8), (1, 1, 1)), LevelSpec("1", (2, 4, 4), (2, 2, 2))]
    create_image(dst, ImageMeta("zyx", (1.0, 1.0, 1.0)), levels, dtype="uint16", chunks=(2, 4, 4))
    for level in levels:
        shutil.rmtree(dst / level.path)
    data = json.loads(vol("info", dst, "--json").stdout)
    assert data["complete"] is False and data["shape"] == [4, 8, 8] and data["dtype"] is None
    text = vol("info", dst)
    assert text.exit_code == 0 and "INCOMPLETE" in text.stdout


def test_quiet_prints_only_the_result(vol, tmp_path, volume):
    src = _h5(tmp_path / "a.h5", volume)
    quiet = vol("-q", "convert", src, tmp_path / "q.zarr")
    assert quiet.exit_code == 0 and quiet.stderr == ""
    loud = vol("convert", src, tmp_path / "l.zarr")
    assert "convert level 0:" in loud.stderr and "no voxel size metadata" in loud.stderr
