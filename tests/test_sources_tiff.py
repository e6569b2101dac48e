"""TIFF, OME-TIFF and ImageJ inputs: block-wise conversion, metadata, damaged files."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import tifffile
from source_checks import assert_one_line_failure, convert_and_check

from volumetric.errors import InputError
from volumetric.geometry import Box
from volumetric.io.ome import open_image
from volumetric.io.sources import TiffSource, open_source
from volumetric.ops import convert as convert_module

rng = np.random.default_rng(7)
STACK = rng.integers(0, 60000, (12, 50, 70), dtype=np.uint16)


def _write_pages(path, stack, **options):
    """One IFD per page, each page written separately (not one contiguous block)."""
    with tifffile.TiffWriter(path, bigtiff=str(path).endswith(".btf")) as tif:
        for page in stack:
            tif.write(page, contiguous=False, metadata=None, **options)


@pytest.mark.parametrize(
    "name, write",
    [
        ("contiguous.tif", lambda p: tifffile.imwrite(p, STACK)),
        ("zlib.tiff", lambda p: tifffile.imwrite(p, STACK, compression="zlib", rowsperstrip=8)),
        ("tiled.tif", lambda p: tifffile.imwrite(p, STACK, tile=(16, 32), compression="zlib")),
        ("pages.btf", lambda p: _write_pages(p, STACK)),
        ("pages_zlib.tif", lambda p: _write_pages(p, STACK, compression="zlib")),
    ],
)
def test_multipage_tiff_is_a_z_stack(tmp_path, client, name, write):
    write(tmp_path / name)
    info = convert_and_check(tmp_path / name, tmp_path / "out.zarr", STACK, client,
                             chunks=(4, 16, 32))
    assert info["axes"] == "zyx"


def test_imagej_hyperstack_axes_and_calibration(tmp_path, client):
    data = rng.integers(0, 255, (3, 4, 2, 20, 30), dtype=np.uint8)  # TZCYX
    tifffile.imwrite(tmp_path / "hyper.tif", data, imagej=True, resolution=(1 / 0.25, 1 / 0.3),
                     metadata={"axes": "TZCYX", "spacing": 1.5, "unit": "micron",
                               "finterval": 2.0})
    info = convert_and_check(tmp_path / "hyper.tif", tmp_path / "out.zarr",
                             data.transpose(0, 2, 1, 3, 4), client, chunks=(2, 8, 16))
    assert info["axes"] == "tczyx"
    assert info["voxel_size"] == pytest.approx([1.5, 0.3, 0.25])
    assert info["unit"] == "micrometer"
    meta = open_image(str(tmp_path / "out.zarr")).meta
    assert (meta.time_step, meta.time_unit) == (2.0, "second")


@pytest.mark.parametrize("suffix", [".ome.tif", ".ome.tiff"])
def test_ome_tiff_voxel_size_units_and_channel_names(tmp_path, client, suffix):
    data = rng.random((2, 5, 20, 30)).astype(np.float32)  # CZYX
    path = tmp_path / f"cells{suffix}"
    tifffile.imwrite(path, data, ome=True, metadata={
        "axes": "CZYX", "PhysicalSizeX": 200, "PhysicalSizeXUnit": "nm",
        "PhysicalSizeY": 0.3, "PhysicalSizeYUnit": "µm",
        "PhysicalSizeZ": 1.1, "PhysicalSizeZUnit": "µm",
        "Channel": {"Name": ["dapi", "gfp"]},
    })
    info = convert_and_check(path, tmp_path / "out.zarr", data, client, chunks=(2, 8, 16))
    assert info["axes"] == "czyx"
    assert info["unit"] == "nanometer"  # the x unit; y and z are converted to it
    assert info["voxel_size"] == pytest.approx([1100.0, 300.0, 200.0])
    assert info["channels"] == ["dapi", "gfp"]


def test_rgb_tiff_samples_become_channels(tmp_path, client):
    rgb = rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "rgb.tif", rgb, photometric="rgb",
                     resolution=(1e4 / 0.5, 1e4 / 0.5), resolutionunit="CENTIMETER")
    info = convert_and_check(tmp_path / "rgb.tif", tmp_path / "out.zarr",
                             np.moveaxis(rgb, -1, 0), client, chunks=(16, 16))
    assert info["axes"] == "cyx"
    assert info["voxel_size"] == pytest.approx([0.5, 0.5])
    assert info["unit"] == "micrometer"


@pytest.mark.parametrize("compression", [None, "zlib"])
def test_big_endian_tiff_is_stored_native(tmp_path, client, compression):
    tifffile.imwrite(tmp_path / "be.tif", STACK, byteorder=">", compression=compression)
    convert_and_check(tmp_path / "be.tif", tmp_path / "out.zarr", STACK, client,
                      chunks=(4, 16, 32))


def test_unknown_tiff_axis_needs_axes(tmp_path, client):
    data = rng.integers(0, 255, (3, 20, 30), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "lambda.tif", data, photometric="minisblack",
                     metadata={"axes": "EYX"})
    with pytest.raises(InputError, match=r"E \(lambda\).*--axes"):
        open_source(str(tmp_path / "lambda.tif"))
    convert_and_check(tmp_path / "lambda.tif", tmp_path / "out.zarr", data, client,
                      chunks=(1, 8, 16), axes="cyx")


@pytest.mark.parametrize("shape, axes", [((2, 5, 20, 30), "czyx"), ((2, 3, 5, 20, 30), "tczyx")])
def test_tiff_without_axis_metadata_follows_the_default_axes(tmp_path, client, shape, axes):
    data = rng.integers(0, 60000, shape, dtype=np.uint16)
    tifffile.imwrite(tmp_path / "plain.tif", data, photometric="minisblack")
    with tifffile.TiffFile(tmp_path / "plain.tif") as tif:
        assert set(tif.series[0].axes[:-2]) == {"Q"}
    info = convert_and_check(tmp_path / "plain.tif", tmp_path / "out.zarr", data, client,
                             chunks=(2, 8, 16))
    assert info["axes"] == axes


def test_block_read_decodes_only_its_pages(tmp_path):
    path = tmp_path / "pages.tif"
    _write_pages(path, STACK, compression="zlib")
    with tifffile.TiffFile(path) as tif:
        last = tif.pages[-1]
        offset, count = last.dataoffsets[0], last.databytecounts[0]
    with open(path, "r+b") as f:  # garble the last page's compressed data
        f.seek(offset)
        f.write(b"\xff" * count)
    source = open_source(str(path))
    np.testing.assert_array_equal(source.read(Box((0, 0, 0), (11, 50, 70))), STACK[:11])
    with pytest.raises(InputError, match="cannot read TIFF data"):
        source.read(Box((8, 0, 0), (12, 50, 70)))


def test_blocks_cover_whole_strips_and_rows(tmp_path):
    tifffile.imwrite(tmp_path / "strips.tif", STACK, compression="zlib", rowsperstrip=8)
    tifffile.imwrite(tmp_path / "tiles.tif", STACK, compression="zlib", tile=(16, 32))
    tifffile.imwrite(tmp_path / "mapped.tif", STACK)
    reads = {name: open_source(str(tmp_path / name)).chunks
             for name in ("strips.tif", "tiles.tif", "mapped.tif")}
    assert reads == {"strips.tif": (1, 8, 70), "tiles.tif": (1, 16, 32), "mapped.tif": (1, 1, 70)}
    grid = convert_module._write_grid(STACK.shape, (4, 16, 16), None, 2, 1, reads["strips.tif"])
    assert grid.block == (4, 16, 70)  # whole rows of two whole strips


def test_rewritten_file_is_read_afresh(tmp_path):
    path = str(tmp_path / "a.tif")
    _write_pages(path, STACK, compression="zlib")
    box = Box((0, 0, 0), (2, 50, 70))
    np.testing.assert_array_equal(TiffSource(path).read(box), STACK[:2])
    _write_pages(path, STACK[::-1], compression="zlib")
    np.testing.assert_array_equal(TiffSource(path).read(box), STACK[::-1][:2])


@pytest.mark.parametrize("name, write", [
    ("contiguous.tif", lambda p: tifffile.imwrite(p, STACK)),
    ("imagej.tif", lambda p: tifffile.imwrite(p, STACK, imagej=True)),
    ("pages_zlib.tif", lambda p: _write_pages(p, STACK, compression="zlib")),
])
@pytest.mark.parametrize("keep", [0.5, 0.97])
def test_truncated_tiff_is_refused_at_open(tmp_path, vol, name, write, keep):
    path = tmp_path / name
    write(path)
    os.truncate(path, int(os.path.getsize(path) * keep))
    dst = tmp_path / "out.zarr"
    result = vol("convert", path, dst, "--chunks", "4,16,32")
    assert_one_line_failure(result, vol, dst, mentions="truncated")
    assert not dst.exists()


def test_damage_found_while_reading_names_the_block(tmp_path, vol):
    path = tmp_path / "pages.tif"
    _write_pages(path, STACK, compression="zlib")
    with tifffile.TiffFile(path) as tif:
        page = tif.pages[5]
        offset, count = page.dataoffsets[0], page.databytecounts[0]
    with open(path, "r+b") as f:
        f.seek(offset + count // 2)
        f.write(b"\x00" * (count // 2))
    dst = tmp_path / "out.zarr"
    result = vol("convert", path, dst, "--chunks", "4,16,32")
    assert result.exit_code == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("vol: error")]
    assert len(errors) == 1 and "Traceback" not in result.stderr
    assert errors[0].startswith("vol: error: block [") and f"{path}: cannot read" in errors[0]
    assert json.loads(vol("info", dst, "--json").stdout)["complete"] is False


def test_axes_that_do_not_fit_the_tiff(tmp_path, vol):
    tifffile.imwrite(tmp_path / "plane.tif", STACK[0])
    dst = tmp_path / "out.zarr"
    result = vol("convert", tmp_path / "plane.tif", dst, "--axes", "zyx")
    assert_one_line_failure(result, vol, dst, mentions="axes 'zyx' do not match")
    assert not dst.exists()


def test_series_choice(tmp_path):
    path = str(tmp_path / "two.tif")
    with tifffile.TiffWriter(path) as tif:
        tif.write(STACK[:3], photometric="minisblack")
        tif.write(STACK[0, :10, :20])
    assert TiffSource(path, "1").shape == (10, 20)
    with pytest.raises(InputError, match="2 image series"):
        TiffSource(path, "2")
