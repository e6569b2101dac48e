"""Video inputs: frames as t, RGB as c, seeking to each block's first frame."""

from __future__ import annotations

import json

import imageio
import numpy as np
import pytest
from source_checks import assert_one_line_failure, convert_and_check

from volumetric.errors import InputError
from volumetric.geometry import Box
from volumetric.io.ome import open_image
from volumetric.io.sources import VideoSource

rng = np.random.default_rng(11)


def _write_video(path, frames, fps, **options):
    with imageio.v2.get_writer(path, format="FFMPEG", fps=fps, macro_block_size=1,
                               **options) as writer:
        for frame in frames:
            writer.append_data(frame)


def test_lossless_rgb_video(tmp_path, client):
    # FFV1 in Matroska is lossless, so the output must equal the frames written.
    frames = rng.integers(0, 255, (10, 24, 32, 3), dtype=np.uint8)
    _write_video(tmp_path / "clip.mkv", frames, 5, codec="ffv1", pixelformat="bgr0")
    info = convert_and_check(tmp_path / "clip.mkv", tmp_path / "out.zarr",
                             frames.transpose(0, 3, 1, 2), client, chunks=(3, 1, 16, 16))
    assert info["axes"] == "tcyx"
    meta = open_image(str(tmp_path / "out.zarr")).meta
    assert meta.time_step == pytest.approx(0.2) and meta.time_unit == "second"


def test_grayscale_video_has_no_channel_axis(tmp_path, client):
    frames = rng.integers(0, 255, (9, 24, 32), dtype=np.uint8)
    _write_video(tmp_path / "gray.mkv", frames, 10, codec="ffv1", pixelformat="gray")
    info = convert_and_check(tmp_path / "gray.mkv", tmp_path / "out.zarr", frames, client,
                             chunks=(2, 16, 16))
    assert info["axes"] == "tyx"


def test_h264_blocks_seek_to_their_own_frames(tmp_path, client):
    # Lossless H.264 (RGB, qp 0) with predicted frames and a keyframe every 12:
    # blocks start mid-GOP, and any seek off by one frame would show.
    smooth = np.cumsum(rng.integers(-2, 3, (40, 32, 48, 3)), axis=0) + 128
    frames = np.clip(smooth, 0, 255).astype(np.uint8)
    path = tmp_path / "clip.mp4"
    _write_video(path, frames, 25, codec="libx264rgb", pixelformat="rgb24", quality=None,
                 output_params=["-qp", "0", "-g", "12"])
    convert_and_check(path, tmp_path / "out.zarr", frames.transpose(0, 3, 1, 2), client,
                      chunks=(7, 3, 32, 48))


def test_reads_in_any_order_reuse_or_restart_the_decoder(tmp_path):
    frames = rng.integers(0, 255, (40, 16, 16, 3), dtype=np.uint8)
    path = tmp_path / "clip.mp4"
    _write_video(path, frames, 25, codec="libx264rgb", pixelformat="rgb24", quality=None,
                 output_params=["-qp", "0", "-g", "12"])
    source = VideoSource(str(path))
    # forward from a seek, backwards (new decoder), continuing, skipping ahead, the end
    for start, stop in [(14, 21), (0, 7), (7, 14), (30, 35), (35, 40)]:
        got = source.read(Box((start, 0, 0, 0), (stop, 3, 16, 16)))
        np.testing.assert_array_equal(got, frames[start:stop].transpose(0, 3, 1, 2))


def test_video_frames_as_z_slices_in_gray(tmp_path):
    frames = rng.integers(0, 255, (6, 16, 16), dtype=np.uint8)
    rgb = np.repeat(frames[..., None], 3, axis=-1)
    _write_video(tmp_path / "sweep.mkv", rgb, 4, codec="ffv1", pixelformat="bgr0")
    source = VideoSource(str(tmp_path / "sweep.mkv"), axes="zyx")
    assert source.axes == "zyx" and source.time_step is None
    np.testing.assert_array_equal(source.read(Box((2, 0, 0), (5, 16, 16))), frames[2:5])


def test_axes_that_do_not_fit_a_video(tmp_path, vol):
    _write_video(tmp_path / "clip.mkv", rng.integers(0, 255, (3, 8, 8, 3), dtype=np.uint8), 5,
                 codec="ffv1", pixelformat="bgr0")
    dst = tmp_path / "out.zarr"
    result = vol("convert", tmp_path / "clip.mkv", dst, "--axes", "cyx")
    assert_one_line_failure(result, vol, dst, mentions="for a video must be")
    assert not dst.exists()


def test_truncated_video(tmp_path, vol):
    path = tmp_path / "clip.mp4"
    _write_video(path, rng.integers(0, 255, (40, 16, 16, 3), dtype=np.uint8), 25,
                 codec="libx264rgb", pixelformat="rgb24", quality=None, output_params=["-qp", "0"])
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    dst = tmp_path / "out.zarr"
    result = vol("convert", path, dst)
    assert result.exit_code == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("vol: error")]
    assert len(errors) == 1 and str(path) in errors[0], result.stderr
    if dst.exists():
        assert json.loads(vol("info", dst, "--json").stdout)["complete"] is False


def test_unreadable_video(tmp_path):
    (tmp_path / "broken.mp4").write_bytes(b"\x00" * 1000)
    with pytest.raises(InputError, match="broken.mp4: not a readable video"):
        VideoSource(str(tmp_path / "broken.mp4"))
