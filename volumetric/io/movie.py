"""Write RGB frames as an MP4 (H.264, streamed frame by frame) or a GIF, and PNG images."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

from volumetric.extras import require


def check_movie_writer(path: str) -> None:
    """Refuse, before any work, an MP4 when ffmpeg (the ``video`` extra) is not installed.

    Raises
    ------
    MissingExtraError
        ``path`` ends in ``.mp4`` and imageio-ffmpeg is missing (a GIF needs nothing more).
    """
    if Path(path).suffix.lower() == ".mp4":
        require("imageio_ffmpeg", extra="video")


def write_movie(path: str, frames: Iterable[np.ndarray], fps: float) -> int:
    """Write ``(H, W, 3)`` uint8 frames to ``path`` (``.mp4`` or ``.gif``); the frame count.

    MP4 frames must have even sizes (see
    :func:`volumetric.kernels.display.pad_even`); they are encoded as they
    come. A GIF keeps its frames in memory until written.
    """
    if Path(path).suffix.lower() == ".gif":
        import imageio.v3 as iio

        stack = list(frames)
        iio.imwrite(path, np.stack(stack), extension=".gif", duration=1000.0 / fps, loop=0)
        return len(stack)
    require("imageio_ffmpeg", extra="video")
    import imageio.v2 as imageio

    count = 0
    writer = imageio.get_writer(path, format="FFMPEG", mode="I", fps=fps, codec="libx264",
                                pixelformat="yuv420p", macro_block_size=1,
                                ffmpeg_log_level="error", output_params=["-crf", "18"])
    with writer:
        for frame in frames:
            writer.append_data(frame)
            count += 1
    return count


def write_png(path: str, rgb: np.ndarray) -> None:
    """Write an ``(H, W, 3)`` uint8 image as PNG."""
    import imageio.v3 as iio

    iio.imwrite(path, rgb, extension=".png")
