"""`vol export`: TIFF, v3draw, MP4/GIF and PNG read back and compared with the source."""

from __future__ import annotations

import struct
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import tifffile
import zarr
from click.testing import CliRunner
from ome_images import write_image

import volumetric
from volumetric.io import fill, tiff_out
from volumetric.io.ome import ImageMeta, LevelSpec, create_image, finalize_image
from volumetric.io.region import Selection, parse_region
from volumetric.kernels.display import rescale, round_length, scale_bar
from volumetric.ops import export as export_mod
from volumetric_cli.main import vol as vol_command

VOXEL = (2.0, 0.5, 0.25)


def run(*args):
    """``vol ARGS`` in-process (export needs no cluster)."""
    return CliRunner().invoke(vol_command, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """A 2-channel czyx uint16 image, chunks smaller than the image along every axis."""
    d = tmp_path_factory.mktemp("export")
    rng = np.random.default_rng(5)
    data = rng.integers(0, 4000, (2, 10, 33, 27), dtype=np.uint16)
    write_image(d / "s.zarr", data, axes="czyx", voxel_size=VOXEL, chunks=(1, 4, 16, 16))
    return d / "s.zarr", data


@pytest.fixture(scope="module")
def movie(tmp_path_factory):
    """A tczyx time series with odd y and x sizes (H.264 needs them padded)."""
    d = tmp_path_factory.mktemp("movie")
    rng = np.random.default_rng(6)
    data = rng.integers(0, 1000, (5, 2, 4, 31, 41), dtype=np.uint16)
    write_image(d / "m.zarr", data, axes="tczyx", voxel_size=(1.5, 0.5, 0.5),
                chunks=(1, 1, 4, 31, 41))
    return d / "m.zarr", data


def read_v3draw(path: Path) -> np.ndarray:
    """A reader written from the format description: magic, endianness, int16 type, 4 int32."""
    raw = Path(path).read_bytes()
    assert raw[:24] == b"raw_image_stack_by_hpeng"
    assert raw[24:25] == b"L"
    (code,) = struct.unpack("<h", raw[25:27])
    x, y, z, c = struct.unpack("<4i", raw[27:43])
    dtype = {1: "<u1", 2: "<u2", 4: "<f4"}[code]
    data = np.frombuffer(raw[43:], dtype=dtype)
    assert data.size == x * y * z * c
    return data.reshape(c, z, y, x)


# --- TIFF ----------------------------------------------------------------------------------------


def test_tiff_is_an_imagej_hyperstack_equal_to_the_region(stack, tmp_path):
    src, data = stack
    out = tmp_path / "crop.tif"
    result = run("export", src, out, "--region", "z=1:7,y=3:30")
    assert result.exit_code == 0, result.output
    assert "ImageJ" in result.output
    with tifffile.TiffFile(out) as tif:
        assert tif.is_imagej and not tif.is_bigtiff
        assert tif.series[0].axes == "ZCYX"
        np.testing.assert_array_equal(tif.asarray(), data[:, 1:7, 3:30].transpose(1, 0, 2, 3))
        meta = tif.imagej_metadata
        assert meta["spacing"] == pytest.approx(VOXEL[0]) and meta["unit"] == "micron"
        assert meta["channels"] == 2 and meta["slices"] == 6
        xres = tif.pages[0].tags["XResolution"].value
        yres = tif.pages[0].tags["YResolution"].value
        assert xres[1] / xres[0] == pytest.approx(VOXEL[2])
        assert yres[1] / yres[0] == pytest.approx(VOXEL[1])
    assert not list(tmp_path.glob(".*partial*"))


def test_tiff_dtype_scaling_with_a_given_range(stack, tmp_path):
    src, data = stack
    out = tmp_path / "u8.tif"
    assert run("export", src, out, "--channel", "1", "--dtype", "uint8",
               "--range", "100,3000").exit_code == 0
    expected = np.clip((data[1].astype(float) - 100) * 255 / 2900, 0, 255) + 0.5
    got = tifffile.imread(out)
    assert got.dtype == np.uint8
    np.testing.assert_array_equal(got, expected.astype(np.uint8))


def test_tiff_auto_range_spans_the_type(stack, tmp_path):
    src, _ = stack
    out = tmp_path / "auto.tif"
    assert run("export", src, out, "--dtype", "uint16").exit_code == 0
    got = tifffile.imread(out)
    assert got.dtype == np.uint16 and got.min() == 0 and got.max() == 65535
    assert 0.0 < np.mean(got == 65535) < 0.01  # only the top 0.1 % or so saturate


def test_tiff_over_the_classic_limit_is_an_ome_bigtiff(stack, tmp_path, monkeypatch):
    src, data = stack
    monkeypatch.setattr(tiff_out, "CLASSIC_LIMIT", 1000)
    report = volumetric.export(str(src), str(tmp_path / "big.tif"), progress=False)
    assert "BigTIFF" in report.kind
    with tifffile.TiffFile(tmp_path / "big.tif") as tif:
        assert tif.is_bigtiff and tif.is_ome and not tif.is_imagej
        np.testing.assert_array_equal(tif.asarray(), data.transpose(1, 0, 2, 3))
        assert 'PhysicalSizeZ="2.0"' in tif.ome_metadata


def test_tiff_reads_piece_by_piece(stack, tmp_path, monkeypatch):
    """With a budget of one row, every read is one plane of one channel and one row of chunks."""
    src, data = stack
    monkeypatch.setattr(export_mod, "SLAB_BYTES", 1)
    reads = []
    original = Selection.read

    def spy(self, t, c, z, y=slice(None)):
        block = original(self, t, c, z, y)
        reads.append(block.shape)
        return block

    monkeypatch.setattr(Selection, "read", spy)
    volumetric.export(str(src), str(tmp_path / "s.tif"), progress=False)
    c, z, y, _ = data.shape
    assert len(reads) == c * z * 3  # 33 rows in chunks of 16
    assert all(shape[:3] == (1, 1, 1) and shape[3] <= 16 for shape in reads)
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "s.tif"), data.transpose(1, 0, 2, 3))


def test_level_halves_the_voxel_size(tmp_path):
    data = np.arange(8 * 16 * 16, dtype=np.uint16).reshape(8, 16, 16)
    meta = ImageMeta(axes="zyx", voxel_size=(1.0, 0.5, 0.5), unit="micrometer")
    levels = [LevelSpec("0", data.shape, (1, 1, 1)), LevelSpec("1", (8, 8, 8), (1, 2, 2))]
    create_image(tmp_path / "p.zarr", meta, levels, dtype=data.dtype, chunks=(4, 8, 8))
    zarr.open_array(str(tmp_path / "p.zarr" / "0"), mode="r+")[...] = data
    zarr.open_array(str(tmp_path / "p.zarr" / "1"), mode="r+")[...] = data[:, ::2, ::2]
    finalize_image(tmp_path / "p.zarr")
    assert run("export", tmp_path / "p.zarr", tmp_path / "l1.tif", "--level", "1").exit_code == 0
    with tifffile.TiffFile(tmp_path / "l1.tif") as tif:
        np.testing.assert_array_equal(tif.asarray(), data[:, ::2, ::2])
        xres = tif.pages[0].tags["XResolution"].value
        assert xres[1] / xres[0] == pytest.approx(1.0)


# --- v3draw --------------------------------------------------------------------------------------


def test_v3draw_reads_back_equal(stack, tmp_path):
    src, data = stack
    out = tmp_path / "s.v3draw"
    result = run("export", src, out, "--region", "x=2:20")
    assert result.exit_code == 0, result.output
    np.testing.assert_array_equal(read_v3draw(out), data[..., 2:20])


def test_v3draw_of_one_channel_scaled_to_uint8(stack, tmp_path):
    src, data = stack
    out = tmp_path / "c1.v3draw"
    assert run("export", src, out, "--channel", "1", "--dtype", "uint8",
               "--range", "0,4000").exit_code == 0
    got = read_v3draw(out)
    assert got.dtype == np.uint8 and got.shape == (1, *data.shape[1:])
    np.testing.assert_array_equal(got[0], rescale(data[1], 0, 4000, "uint8"))


def test_v3draw_float32_and_time_point(movie, tmp_path):
    src, data = movie
    assert run("export", src, tmp_path / "t2.v3draw", "--t", "2").exit_code == 0
    np.testing.assert_array_equal(read_v3draw(tmp_path / "t2.v3draw"), data[2])
    f = data[0].astype(np.float32) / 7
    write_image(tmp_path / "f.zarr", f, axes="czyx", chunks=(1, 2, 16, 16))
    assert run("export", tmp_path / "f.zarr", tmp_path / "f.v3draw").exit_code == 0
    np.testing.assert_array_equal(read_v3draw(tmp_path / "f.v3draw"), f)


# --- movies and previews -------------------------------------------------------------------------


def test_mp4_of_a_time_series_has_one_padded_frame_per_time_point(movie, tmp_path):
    src, data = movie
    result = run("export", src, tmp_path / "m.mp4", "--fps", "4")
    assert result.exit_code == 0, result.output
    frames = iio.imread(tmp_path / "m.mp4")
    assert frames.shape == (5, 32, 42, 3)
    assert frames.max() > 100  # not black


def test_mp4_z_sweep_and_gif(movie, tmp_path):
    src, data = movie
    assert run("export", src, tmp_path / "z.mp4", "--t", "1").exit_code == 0
    assert iio.imread(tmp_path / "z.mp4").shape[0] == data.shape[2]
    assert run("export", src, tmp_path / "m.gif", "--plane", "2").exit_code == 0
    gif = iio.imread(tmp_path / "m.gif")
    assert gif.shape[:3] == (5, 31, 41)
    one = run("export", src, tmp_path / "one.mp4", "--t", "0", "--region", "z=1")
    assert one.exit_code == 0 and iio.imread(tmp_path / "one.mp4").shape[0] == 1


def test_worm_recording_becomes_a_movie_that_moves(tmp_path):
    from volumetric.testing.frames import frames

    worm = frames((2, 48, 40, 8), 6, seed=3)
    data = np.stack([worm.frame(i).transpose(0, 3, 2, 1) for i in range(6)])  # cxyz -> czyx
    write_image(tmp_path / "w.zarr", data, axes="tczyx", voxel_size=(1.5, 0.5, 0.5),
                chunks=(1, 1, 8, 40, 48))
    assert run("export", tmp_path / "w.zarr", tmp_path / "w.mp4", "--fps", "5").exit_code == 0
    movie = iio.imread(tmp_path / "w.mp4").astype(int)
    assert movie.shape == (6, 40, 48, 3)
    assert movie.max() > 200 and movie[..., 1].mean() > 5  # bright, and the first channel green
    assert np.abs(movie[0] - movie[-1]).mean() > 1  # the brain moves


def test_png_preview_has_the_scale_bar(tmp_path):
    data = np.zeros((3, 120, 300), np.uint16)
    data[1, 20:40, 30:60] = 1000
    write_image(tmp_path / "p.zarr", data, voxel_size=(1.0, 0.4, 0.4), chunks=(2, 64, 64))
    assert run("export", tmp_path / "p.zarr", tmp_path / "p.png").exit_code == 0
    png = iio.imread(tmp_path / "p.png")[..., :3]
    assert png.shape == (120, 300, 3)
    length, label = scale_bar(300, 0.4, "micrometer")
    assert (length, label) == (50, "20 µm")
    bottom = 120 - 120 // 20 - 1  # the bar's last row
    white = np.all(png[bottom] == 255, axis=-1)
    assert white.sum() == length
    assert np.flatnonzero(white)[-1] == 300 - 300 // 20 - 1
    assert png[30, 45].max() == 255  # the blob shows


def test_display_kernels():
    assert round_length(0.37) == pytest.approx(0.2)
    assert round_length(100.0) == 100.0
    assert scale_bar(1000, 1.0, None) == (200, "200 px")
    np.testing.assert_array_equal(rescale(np.array([5.0, np.nan]), 5, 5, "uint8"), [0, 0])


def test_region_syntax():
    assert parse_region(" y = 0:256 , c=1, z=:4") == {"y": (0, 256), "c": (1, 2), "z": (None, 4)}
    assert parse_region(None) == {}


# --- the library equals the command --------------------------------------------------------------


def test_api_equals_cli(stack, tmp_path):
    src, _ = stack
    assert run("export", src, tmp_path / "cli.tif", "--region", "z=2:5").exit_code == 0
    volumetric.export(str(src), str(tmp_path / "api.tif"), region="z=2:5", progress=False)
    assert (tmp_path / "cli.tif").read_bytes() == (tmp_path / "api.tif").read_bytes()


def test_relative_paths_name_the_callers_folder(stack, tmp_path, monkeypatch):
    src, data = stack
    monkeypatch.chdir(src.parent)
    volumetric.export("s.zarr", "rel.tif", progress=False)
    assert tifffile.imread(src.parent / "rel.tif").shape == (10, 2, 33, 27)
    (src.parent / "rel.tif").unlink()


# --- bad input -----------------------------------------------------------------------------------

BAD = [
    ("region outside", ["s.tif", "--region", "z=5:40"], "outside the image"),
    ("region axis missing", ["s.tif", "--region", "t=0:1"], "does not have"),
    ("region syntax", ["s.tif", "--region", "z10:20"], "AXIS=START:STOP"),
    ("unknown suffix", ["s.jpg"], "unknown export format"),
    ("no suffix", ["s"], "unknown export format"),
    ("channel out of range", ["s.tif", "--channel", "2"], "out of range"),
    ("channel name", ["s.tif", "--channel", "dapi"], "not a channel"),
    ("level", ["s.tif", "--level", "3"], "levels 0..0"),
    ("range without dtype", ["s.tif", "--range", "0,10"], "--dtype"),
    ("range reversed", ["s.tif", "--dtype", "uint8", "--range", "10,0"], "MIN must be below"),
    ("dtype for a movie", ["s.mp4", "--dtype", "uint8"], "--dtype applies"),
    ("plane of a z-sweep", ["s.mp4", "--plane", "1"], "sweeps through z"),
    ("plane out of range", ["s.png", "--plane", "10"], "out of range"),
    ("no time axis", ["s.tif", "--t", "0"], "no t axis"),
]


@pytest.mark.parametrize("args,message", [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_bad_input_is_one_line_exit_2_and_no_file(stack, tmp_path, args, message):
    src, _ = stack
    result = run("export", src, tmp_path / args[0], *args[1:])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vol: error:") and message in lines[0], lines
    assert not list(tmp_path.iterdir())


def test_v3draw_limits(movie, tmp_path):
    src, _ = movie
    result = run("export", src, tmp_path / "m.v3draw")
    assert result.exit_code == 2 and "choose one with --t" in result.output
    write_image(tmp_path / "i.zarr", np.zeros((2, 4, 4), np.int32))
    result = run("export", tmp_path / "i.zarr", tmp_path / "i.v3draw")
    assert result.exit_code == 2 and "--dtype" in result.output
    from volumetric.errors import InputError
    from volumetric.io.v3draw import check_v3draw

    with pytest.raises(InputError, match="int32"):
        check_v3draw((2**31, 1, 1, 1), np.dtype(np.uint8))
    assert not list(tmp_path.glob("*.v3draw"))


def test_existing_output_needs_overwrite_and_failure_leaves_no_file(stack, tmp_path, monkeypatch):
    src, _ = stack
    (tmp_path / "old.tif").write_text("keep me")
    result = run("export", src, tmp_path / "old.tif")
    assert result.exit_code == 2 and (tmp_path / "old.tif").read_text() == "keep me"

    def broken(path, *args, **kwargs):
        assert Path(path).stat().st_size > 0  # the header is written, the pixels are not
        raise RuntimeError("disk full")

    monkeypatch.setattr(fill, "fill_planes", broken)
    with pytest.raises(RuntimeError):
        volumetric.export(str(src), str(tmp_path / "old.tif"), overwrite=True, progress=False)
    assert (tmp_path / "old.tif").read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.tif"]
