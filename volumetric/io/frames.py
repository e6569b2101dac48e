"""Frames of a time series: one time point (or one channel of it) as a box, its projection."""

from __future__ import annotations

import numpy as np

from volumetric.geometry import Box
from volumetric.io.sources import Source


def frame_box(source: Source, t: int, channel: int | None = None) -> Box:
    """The whole frame ``t`` (or its channel ``channel``) as a box of ``source``."""
    start, stop = [], []
    for axis, size in zip(source.axes, source.shape):
        lo, hi = ((t, t + 1) if axis == "t" else
                  (channel, channel + 1) if axis == "c" and channel is not None else (0, size))
        start.append(lo)
        stop.append(hi)
    return Box(tuple(start), tuple(stop))


def projections(source: Source, t: int, channel: int | None = None) -> np.ndarray:
    """Frame ``t`` as ``(C, Y, X)`` maxima over ``z`` (one channel when ``channel`` is given)."""
    data = source.read(frame_box(source, t, channel))
    axes = source.axes
    if "z" in axes:
        data = data.max(axis=axes.index("z"), keepdims=True)
    return data.reshape(-1, *data.shape[-2:])
