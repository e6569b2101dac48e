"""Video files (mp4, avi, mov, mkv...) read frame range by frame range with imageio-ffmpeg.

Frames become the ``t`` axis (``z`` with ``--axes zyx`` for a z-sweep);
colour videos keep their three RGB channels as ``c``, grayscale videos (and
any video with ``--axes tyx``) are decoded to one channel. A block task
starts ffmpeg at its first frame (input seeking, exact for constant frame
rate videos) and decodes only its own frames.
"""

from __future__ import annotations

import numpy as np

from volumetric.errors import InputError
from volumetric.io.sources.base import Source, parse_axes, to_ngff

VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".wmv",
                  ".flv", ".ogv")
# ffmpeg output pixel format -> (dtype, channels)
_FORMATS = {"rgb24": ("uint8", 3), "gray": ("uint8", 1), "gray16le": ("uint16", 1)}


def _ffmpeg_error(path: str, exc: Exception) -> InputError:
    lines = [line for line in str(exc).splitlines() if line.strip()]
    return InputError(f"{path}: not a readable video ({lines[-1] if lines else exc})")


def _pixel_format(source_format: str, gray: bool | None) -> str:
    """The decoded format: grayscale videos stay grayscale (16-bit ones too)."""
    source_gray = source_format.startswith(("gray", "y8", "y16"))
    if gray is False or (gray is None and not source_gray):
        return "rgb24"
    deep = source_gray and any(bits in source_format for bits in ("10", "12", "14", "16"))
    return "gray16le" if deep else "gray"


class VideoSource(Source):
    """The frames of a video file.

    Parameters
    ----------
    path : str
        The video.
    axes : str, optional
        ``tyxc`` (colour, the default for colour videos), ``tyx`` (grayscale,
        the default for grayscale videos), or ``zyx`` / ``zyxc`` for frames
        that are z-slices.
    """

    def __init__(self, path: str, axes: str | None = None):
        import imageio_ffmpeg

        self.path = path
        if axes is not None:
            axes = axes.lower()
            if axes[:1] not in ("t", "z") or axes[1:3] != "yx" or axes[3:] not in ("", "c"):
                raise InputError(f"--axes {axes!r} for a video must be tyx, tyxc, zyx or zyxc")
        try:
            frames, _ = imageio_ffmpeg.count_frames_and_secs(path)
            reader = imageio_ffmpeg.read_frames(path)
            meta = next(reader)
            reader.close()
        except (OSError, RuntimeError, StopIteration) as exc:
            raise _ffmpeg_error(path, exc) from None
        if not frames:
            raise InputError(f"{path}: the video holds no frames")
        self.fps = float(meta["fps"])
        width, height = meta["size"]
        self.pix_fmt = _pixel_format(meta["pix_fmt"], None if axes is None else len(axes) == 3)
        dtype, channels = _FORMATS[self.pix_fmt]
        self.dtype = np.dtype(dtype)
        self.native_shape = (frames, height, width) + ((channels,) if channels > 1 else ())
        default = "tyxc" if channels > 1 else "tyx"
        self.native_axes = parse_axes(axes or default, self.native_shape, what=path)
        self.chunks = to_ngff(self.native_axes, (1, *self.native_shape[1:]))  # whole frames
        if self.native_axes[0] == "t" and self.fps > 0:
            self.time_step, self.time_unit = 1 / self.fps, "second"

    def _read_native(self, index: tuple[slice, ...]) -> np.ndarray:
        import imageio_ffmpeg

        frames = range(*index[0].indices(self.native_shape[0]))
        plane = self.native_shape[1:]
        # Half a frame early, so rounding never skips the first wanted frame.
        seek = ["-ss", f"{(frames.start - 0.5) / self.fps:.6f}"] if frames.start else []
        reader = imageio_ffmpeg.read_frames(
            self.path, pix_fmt=self.pix_fmt, bpp=int(np.prod(plane[2:], dtype=int)) *
            self.dtype.itemsize, input_params=seek, output_params=["-frames:v", str(len(frames))],
        )
        out = []
        try:
            next(reader)
            for raw in reader:
                out.append(np.frombuffer(raw, self.dtype).reshape(plane)[index[1:]])
        except (OSError, RuntimeError) as exc:
            raise _ffmpeg_error(self.path, exc) from None
        finally:
            reader.close()
        if len(out) != len(frames):
            raise InputError(
                f"{self.path}: the video ended at frame "
                f"{frames.start + len(out)}, before frame {frames.stop - 1} (truncated file, or "
                "a variable frame rate)"
            )
        return np.stack(out)
