"""Video files (mp4, avi, mov, mkv...) read frame range by frame range with imageio-ffmpeg.

Frames become the ``t`` axis (``z`` with ``--axes zyx`` for a z-sweep);
colour videos keep their three RGB channels as ``c``, grayscale videos (and
any video with ``--axes tyx``) are decoded to one channel.

Seeking in a compressed video decodes from the keyframe before the target,
often hundreds of frames, so each worker process keeps one ffmpeg decoder
running and lets the next block continue from where the last one stopped
(skipping forward if needed); only a jump backwards or far ahead seeks anew
(input seeking, exact for constant frame rate videos).
"""

from __future__ import annotations

import os

import numpy as np

from volumetric.errors import InputError
from volumetric.extras import require
from volumetric.io.sources.base import Source, parse_axes, to_ngff

VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".wmv",
                  ".flv", ".ogv")
# ffmpeg output pixel format -> (dtype, channels)
_FORMATS = {"rgb24": ("uint8", 3), "gray": ("uint8", 1), "gray16le": ("uint16", 1)}


def _ffmpeg_error(path: str, exc: Exception) -> InputError:
    """One line from ffmpeg's report: its last error, else the failure's first lines."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    errors = [line for line in lines if "error" in line.lower() or "invalid" in line.lower()]
    detail = errors[-1] if errors else " ".join(lines[:2]) or type(exc).__name__
    return InputError(f"{path}: not a readable video ({detail})")


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
        imageio_ffmpeg = require("imageio_ffmpeg", extra="video")

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
        if not self.fps > 0:
            raise InputError(f"{path}: the video states no frame rate, so frames cannot be sought")
        width, height = meta["size"]
        self.pix_fmt = _pixel_format(meta["pix_fmt"], None if axes is None else len(axes) == 3)
        dtype, channels = _FORMATS[self.pix_fmt]
        self.dtype = np.dtype(dtype)
        self.native_shape = (frames, height, width) + ((channels,) if channels > 1 else ())
        default = "tyxc" if channels > 1 else "tyx"
        self.native_axes = parse_axes(axes or default, self.native_shape, what=path)
        self.chunks = to_ngff(self.native_axes, (1, *self.native_shape[1:]))  # whole frames
        if self.native_axes[0] == "t":
            self.time_step, self.time_unit = 1 / self.fps, "second"

    def _read_native(self, index: tuple[slice, ...]) -> np.ndarray:
        frames = range(*index[0].indices(self.native_shape[0]))
        plane = self.native_shape[1:]
        st = os.stat(self.path)
        key = (self.path, self.pix_fmt, st.st_size, st.st_mtime_ns)
        decoder = _DECODERS.pop(key, None)  # owned by this task while it reads
        if decoder is not None and not (
            decoder.position <= frames.start <= decoder.position + SKIP_LIMIT
        ):
            decoder.close()
            decoder = None
        try:
            if decoder is None:
                decoder = _Decoder(self.path, self.pix_fmt, self.fps, frames.start,
                                   int(np.prod(plane[2:])) * self.dtype.itemsize)
            raw = decoder.read(frames.start, frames.stop)
        except (OSError, RuntimeError, StopIteration) as exc:
            if decoder is not None:
                decoder.close()
            raise _ffmpeg_error(self.path, exc) from None
        if len(raw) != len(frames):
            decoder.close()
            raise InputError(
                f"{self.path}: the video ended at frame {frames.start + len(raw)}, before "
                f"frame {frames.stop - 1} (truncated file, or a variable frame rate)"
            )
        while len(_DECODERS) >= MAX_DECODERS:
            _DECODERS.pop(next(iter(_DECODERS))).close()
        _DECODERS[key] = decoder
        return np.stack([np.frombuffer(b, self.dtype).reshape(plane)[index[1:]] for b in raw])


class _Decoder:
    """An ffmpeg process decoding one video forward, from a given frame on."""

    def __init__(self, path: str, pix_fmt: str, fps: float, start: int, pixel_bytes: int):
        imageio_ffmpeg = require("imageio_ffmpeg", extra="video")

        # Half a frame early, so rounding never skips the first wanted frame.
        seek = ["-ss", f"{(start - 0.5) / fps:.6f}"] if start else []
        self.frames = imageio_ffmpeg.read_frames(path, pix_fmt=pix_fmt, bpp=pixel_bytes,
                                                 input_params=seek)
        self.position = start  # index of the next frame it yields
        next(self.frames)  # ffmpeg's metadata

    def read(self, start: int, stop: int) -> list[bytes]:
        """Frames ``start`` to ``stop`` (fewer if the video ends first)."""
        out: list[bytes] = []
        for raw in self.frames:
            self.position += 1
            if self.position > start:
                out.append(raw)
            if self.position >= stop:
                break
        return out

    def close(self) -> None:
        self.frames.close()


# One decoder per video (and pixel format) in each worker process.
_DECODERS: dict[tuple[str, str, int, int], _Decoder] = {}
MAX_DECODERS = 2
# Decoding and dropping up to this many frames is cheaper than a seek, which
# decodes from the previous keyframe (x264 places one every 250 frames).
SKIP_LIMIT = 250
