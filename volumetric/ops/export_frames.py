"""Movie frames and previews of an export: projections, a z-sweep, contrast, PNG with a scale bar.

A movie of a time series has one frame per time point (the maximum over z
of the region, or one ``plane``); with a single time point it sweeps
through z. Channels are blended in the OME channel colours with one
contrast for the whole movie, taken from the percentiles of a few frames.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from volumetric.engine import Progress
from volumetric.errors import InputError
from volumetric.io.ome import CHANNEL_COLOURS
from volumetric.io.region import SLAB_BYTES, Selection
from volumetric.kernels.display import frame_contrast, spread



def projection(sel: Selection, t: int, plane: int | None) -> np.ndarray:
    """``(C, Y, X)``: the maximum over z at time ``t``, or the plane ``plane``."""
    if plane is not None:
        return sel.read(slice(t, t + 1), slice(None), slice(plane, plane + 1))[0, :, 0]
    result = None
    for zs in sel.z_slabs(sel.slab_planes(SLAB_BYTES)):
        part = sel.read(slice(t, t + 1), slice(None), zs)[0].max(axis=1)
        result = part if result is None else np.maximum(result, part)
    return result


def check_plane(sel: Selection, plane: int | None, *, movie: bool) -> None:
    """Refuse a ``plane`` outside the region's z range, or for a movie that sweeps z."""
    if plane is None:
        return
    if movie and sel.shape5[0] == 1:
        raise InputError("--plane chooses the plane of a time series; with one time point "
                         "the movie sweeps through z")
    if not 0 <= plane < sel.shape5[2]:
        raise InputError(f"--plane {plane} is out of range: the region has "
                         f"z 0..{sel.shape5[2] - 1}")


def _frames(sel: Selection, plane: int | None) -> tuple[int, Iterator[np.ndarray]]:
    """The number of movie frames and the ``(C, Y, X)`` frames themselves."""
    t_count, z_count = sel.shape5[0], sel.shape5[2]
    if t_count > 1:
        return t_count, (projection(sel, t, plane) for t in range(t_count))

    def sweep() -> Iterator[np.ndarray]:
        for zs in sel.z_slabs(sel.slab_planes(SLAB_BYTES)):
            block = sel.read(slice(0, 1), slice(None), zs)[0]
            for z in range(block.shape[1]):
                yield block[:, z]

    return z_count, sweep()


def _contrast(sel: Selection, plane: int | None, limits) -> tuple[list[float], list[float]]:
    """Per channel black and white levels: ``limits``, or percentiles of a few frames."""
    channels = sel.shape5[1]
    if limits != "auto":
        return [limits[0]] * channels, [limits[1]] * channels
    count = sel.shape5[0] if sel.shape5[0] > 1 else sel.shape5[2]
    if sel.shape5[0] > 1:
        return frame_contrast([projection(sel, t, plane) for t in spread(count)])
    return frame_contrast([sel.read(slice(0, 1), slice(None), slice(z, z + 1))[0, :, 0]
                           for z in spread(count)])


def export_movie(sel: Selection, tmp: str, plane: int | None, limits, fps: float,
                 progress: Progress) -> int:
    """Write the movie of ``sel`` to ``tmp`` (``.mp4`` or ``.gif``); the number of frames.

    ``limits`` is ``"auto"`` (contrast from percentiles) or ``(MIN, MAX)``;
    ``progress`` counts frames.
    """
    from volumetric.io.movie import write_movie
    from volumetric.kernels.display import colour_frame, pad_even

    lows, highs = _contrast(sel, plane, limits)
    count, frames = _frames(sel, plane)
    progress.total = count
    even = Path(tmp).suffix.lower() == ".mp4"

    def rgb() -> Iterator[np.ndarray]:
        for planes in frames:
            frame = colour_frame(planes, CHANNEL_COLOURS, lows, highs)
            yield pad_even(frame) if even else frame
            progress.update()

    return write_movie(tmp, rgb(), fps)


def export_png(sel: Selection, tmp: str, plane: int | None, limits) -> None:
    """Write the first time point's maximum projection (or ``plane``) with a scale bar."""
    from volumetric.io.movie import write_png
    from volumetric.kernels.display import (
        colour_frame,
        composite_rgb,
        draw_scale_bar,
        scale_bar,
    )

    planes = projection(sel, 0, plane)
    if limits == "auto":
        rgb = composite_rgb(planes, CHANNEL_COLOURS)
    else:
        n = planes.shape[0]
        rgb = colour_frame(planes, CHANNEL_COLOURS, [limits[0]] * n, [limits[1]] * n)
    length, label = scale_bar(rgb.shape[1], sel.voxel_size[2], sel.unit)
    write_png(tmp, draw_scale_bar(rgb, length, label))
