"""Export an OME-Zarr image (or a region of it) to the files viewers and players open.

The output's suffix chooses the format:

- ``.tif`` / ``.tiff``: an ImageJ hyperstack for Fiji and Vaa3D (OME-TIFF,
  BigTIFF when over 4 GiB), see :mod:`volumetric.io.tiff_out`;
- ``.v3draw``: Vaa3D's raw format, see :mod:`volumetric.io.v3draw`;
- ``.mp4`` / ``.gif``: a movie of a time series (one maximum projection, or
  one ``plane``, per time point) or, with one time point, a sweep through z;
- ``.png``: a maximum-projection preview with a scale bar.

Exports run in this process. A TIFF or v3draw is preallocated and filled in
place piece by piece (a few planes of one row of chunks, at most
``SLAB_BYTES``; every chunk decoded once); movies and previews read slabs of
whole planes. Memory does not grow with the image. The file is written
under a temporary name and renamed when complete.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from volumetric.engine import Progress
from volumetric.errors import InputError, check_choice
from volumetric.io.destination import claim_file, replacing
from volumetric.io.intensity import intensity_stats
from volumetric.io.ome import OmeImage, open_image
from volumetric.io.region import SLAB_BYTES, Selection, select
from volumetric.ops.paths import absolute

FORMATS = {".tif": "tiff", ".tiff": "tiff", ".v3draw": "v3draw", ".mp4": "movie",
           ".gif": "movie", ".png": "png"}
PNG_MAX_SIDE = 2048  # without --level, a PNG is drawn from the finest level at most this wide
AUTO_PERCENTILES = (0.1, 99.9)


@dataclass
class ExportReport:
    """What :func:`export` wrote.

    ``shape`` is ``(T, C, Z, Y, X)`` of the exported region; ``frames`` the
    number of movie frames (1 for a PNG, None for stacks).
    """

    path: str
    kind: str
    shape: tuple[int, ...]
    dtype: str
    level: int
    seconds: float
    frames: int | None = None


@dataclass(frozen=True)
class Scaling:
    """``--dtype`` with its range: per channel, ``low`` maps to 0 and ``high`` to the maximum."""

    dtype: np.dtype
    low: np.ndarray
    high: np.ndarray

    def apply_channel(self, data: np.ndarray, c: int) -> np.ndarray:
        """Scale ``data`` (any shape) of channel ``c``."""
        from volumetric.kernels.display import rescale

        return rescale(data, self.low[c], self.high[c], self.dtype)


def parse_range(text: str | None) -> str | tuple[float, float]:
    """``"auto"`` or ``"MIN,MAX"`` as ``"auto"`` or a pair of floats with MIN < MAX."""
    if text is None or text.strip().lower() == "auto":
        return "auto"
    try:
        low, high = (float(v) for v in text.split(","))
    except ValueError:
        raise InputError(f"--range {text!r} is neither auto nor MIN,MAX") from None
    if not (np.isfinite(low) and np.isfinite(high) and low < high):
        raise InputError(f"--range {text!r}: MIN must be below MAX")
    return low, high


def _channel_index(image: OmeImage, channel: int | str | None) -> int | None:
    if channel is None or isinstance(channel, int) or str(channel).lstrip("-").isdigit():
        return None if channel is None else int(channel)
    names = list(image.meta.channel_names or ())
    if channel not in names:
        raise InputError(f"--channel {channel!r} is not a channel of the image "
                         f"({', '.join(names) or 'no channel names'})")
    return names.index(channel)


def _level(image: OmeImage, level: int | None, fmt: str) -> int:
    if level is not None:
        if not 0 <= level < len(image.levels):
            raise InputError(f"--level {level}: the image has levels 0..{len(image.levels) - 1}")
        return level
    if fmt != "png":
        return 0
    axes = image.meta.axes
    for i, spec in enumerate(image.levels):
        sizes = dict(zip(axes, spec.shape))
        if max(sizes["y"], sizes["x"]) <= PNG_MAX_SIDE:
            return i
    return len(image.levels) - 1


def _scaling(sel: Selection, dtype: str | None,
             limits: str | tuple[float, float]) -> Scaling | None:
    channels = sel.shape5[1]
    if dtype is None:
        if limits != "auto":
            raise InputError("--range scales to --dtype: give --dtype uint8 or uint16 with it")
        return None
    if limits == "auto":
        axis = sel.axes.index("c") if "c" in sel.axes else None
        stats = intensity_stats(sel.sampler(), percentiles=AUTO_PERCENTILES, channel_axis=axis)
        low, high = np.atleast_1d(stats["low"]), np.atleast_1d(stats["high"])
    else:
        low, high = np.full(channels, limits[0]), np.full(channels, limits[1])
    return Scaling(np.dtype(dtype), low.astype(np.float64), high.astype(np.float64))


def _progress(total: int, out: str, enabled: bool) -> Progress:
    return Progress(total, f"export {Path(out).name}", enabled=enabled)


def _fill(sel: Selection, path: str, offset: int, plane_index, dtype: np.dtype,
          scaling: Scaling | None, progress: Progress) -> None:
    from volumetric.io.fill import fill_planes

    convert = scaling.apply_channel if scaling is not None else None
    progress.total = sum(1 for _ in sel.pieces(SLAB_BYTES))
    fill_planes(path, offset, sel, plane_index, dtype, convert=convert, budget_bytes=SLAB_BYTES,
                progress=progress.update)


def _export_tiff(sel: Selection, tmp: str, scaling: Scaling | None,
                 progress: Progress) -> tuple[str, np.dtype]:
    from volumetric.io.tiff_out import create_tiff, describe, tiff_kind

    dtype = scaling.dtype if scaling else sel.dtype
    nbytes = int(np.prod(sel.shape5)) * dtype.itemsize
    kind = tiff_kind(nbytes, dtype)
    offset = create_tiff(tmp, sel.shape5, dtype, sel.voxel_size, sel.unit, kind)
    _, c_count, z_count, _, _ = sel.shape5
    _fill(sel, tmp, offset, lambda t, c, z: (t * z_count + z) * c_count + c, dtype, scaling,
          progress)
    return describe(kind, nbytes), dtype


def _v3draw_sizes(sel: Selection, dtype: np.dtype) -> tuple[int, int, int, int]:
    from volumetric.io.v3draw import check_v3draw

    t, c, z, y, x = sel.shape5
    if t > 1:
        raise InputError(f"a v3draw holds one time point and the image has {t}; "
                         "choose one with --t")
    check_v3draw((x, y, z, c), dtype)
    return x, y, z, c


def _export_v3draw(sel: Selection, tmp: str, scaling: Scaling | None,
                   progress: Progress) -> tuple[str, np.dtype]:
    from volumetric.io.v3draw import create_v3draw

    dtype = scaling.dtype if scaling else sel.dtype
    sizes = _v3draw_sizes(sel, dtype)
    offset = create_v3draw(tmp, sizes, dtype)
    _fill(sel, tmp, offset, lambda t, c, z: c * sizes[2] + z, dtype, scaling, progress)
    return "Vaa3D raw (v3draw)", dtype


def export(
    src: str,
    out: str,
    *,
    region: str | None = None,
    level: int | None = None,
    channel: int | str | None = None,
    t: int | None = None,
    dtype: str | None = None,
    value_range: str | None = "auto",
    plane: int | None = None,
    fps: float = 10.0,
    overwrite: bool = False,
    progress: bool = True,
) -> ExportReport:
    """Export the OME-Zarr image ``src`` (or a region) to ``out``; the suffix picks the format.

    Parameters
    ----------
    src : str
        An OME-Zarr image.
    out : str
        ``.tif``/``.tiff``, ``.v3draw``, ``.mp4``, ``.gif`` or ``.png``.
    region : str, optional
        Index ranges of the chosen level, ``"z=10:50,y=0:256"`` (see
        :mod:`volumetric.io.region`).
    level : int, optional
        Pyramid level; default 0, for a PNG the finest level at most
        ``PNG_MAX_SIDE`` pixels wide.
    channel : int or str, optional
        One channel, by index or name; default all.
    t : int, optional
        One time point; default all (a PNG shows the first).
    dtype : {"uint8", "uint16"}, optional
        Scale TIFF / v3draw voxels to this type; default: the source's type.
    value_range : str
        With ``dtype``: ``"auto"`` (the 0.1 and 99.9 percentiles of a sample
        of chunks, per channel) or ``"MIN,MAX"``. For movies and PNGs,
        ``"MIN,MAX"`` sets the contrast (default: percentiles).
    plane : int, optional
        Movies of a time series and PNGs: show this z plane (of the region)
        instead of the maximum projection.
    fps : float
        Movie frame rate.
    overwrite : bool
        Replace an existing ``out``.
    progress : bool
        Print a progress line.

    Returns
    -------
    ExportReport

    Raises
    ------
    InputError
        An unknown suffix, a region, channel or time point outside the image,
        or an export the format cannot hold.
    DestinationError
        ``out`` exists (without ``overwrite``) or cannot be written.
    """
    started = time.perf_counter()
    src, out = absolute(src), absolute(out)
    suffix = Path(out).suffix.lower()
    if suffix not in FORMATS:
        raise InputError(f"{out}: unknown export format {suffix or '(no suffix)'}; name the "
                         "output .tif, .v3draw, .mp4, .gif or .png")
    fmt = FORMATS[suffix]
    check_choice(dtype, ("uint8", "uint16"), "--dtype")
    limits = parse_range(value_range)
    if not fps > 0:
        raise InputError(f"--fps must be positive, got {fps}")
    if fmt == "movie":
        from volumetric.io.movie import check_movie_writer

        check_movie_writer(out)
    claim_file(out, inputs=[src], overwrite=overwrite)
    image = open_image(src)
    if not image.complete:
        raise InputError(f"{src} is incomplete (its run was interrupted); finish it first")
    lvl = _level(image, level, fmt)
    scale = image.meta.scale(image.levels[lvl].factors)
    voxel = [s for a, s in zip(image.meta.axes, scale) if a in "zyx"]
    sel = select(image.array(lvl), image.meta.axes, voxel, image.meta.unit, region=region,
                 channel=_channel_index(image, channel), t=t)
    frames = None
    if fmt in ("tiff", "v3draw"):
        if plane is not None:
            raise InputError(f"--plane applies to movies and PNGs, not {suffix}; use --region z=N")
        if fmt == "v3draw":  # refused before any chunk is sampled for --range auto
            _v3draw_sizes(sel, np.dtype(dtype) if dtype else sel.dtype)
        scaling = _scaling(sel, dtype, limits)
        writer = _export_tiff if fmt == "tiff" else _export_v3draw
        with replacing([out], overwrite=overwrite) as (tmp,):
            bar = _progress(0, out, progress)
            kind, out_dtype = writer(sel, str(tmp), scaling, bar)
            bar.close()
    else:
        if dtype is not None:
            raise InputError(f"--dtype applies to .tif and .v3draw exports, not {suffix}")
        from volumetric.ops.export_frames import check_plane, export_movie, export_png

        check_plane(sel, plane, movie=fmt == "movie")
        out_dtype = np.dtype(np.uint8)
        with replacing([out], overwrite=overwrite) as (tmp,):
            if fmt == "movie":
                bar = _progress(0, out, progress)
                frames = export_movie(sel, str(tmp), plane, limits, fps, bar)
                bar.close()
                kind = "MP4 (H.264)" if suffix == ".mp4" else "GIF"
            else:
                export_png(sel, str(tmp), plane, limits)
                frames, kind = 1, "PNG preview"
    return ExportReport(out, kind, sel.shape5, str(out_dtype), lvl,
                        time.perf_counter() - started, frames)
