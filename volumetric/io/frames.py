"""Frames of a time series: one time point (or one channel of it) as a box, its projection."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from volumetric.errors import InputError
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


def frame_channels(source: Source, channels: Sequence[int] | None, what: str) -> tuple[int, ...]:
    """The channels of a time series a matcher uses (all by default); refuses missing ones."""
    count = source.shape[source.axes.index("c")] if "c" in source.axes else 1
    chosen = tuple(range(count)) if channels is None else tuple(channels)
    missing = [c for c in chosen if not 0 <= c < count]
    if missing or not chosen:
        raise InputError(f"{what}: channel(s) {', '.join(map(str, missing)) or '(none)'} do "
                         f"not exist; FRAMES has {count} channel(s), 0..{count - 1}")
    return chosen


def check_time_series(source: Source, path: str, user: str) -> None:
    """Refuse an input that is not a time series of at least 2 frames; ``user`` needs it."""
    axes = source.axes
    if "t" not in axes or not axes.endswith("yx"):
        raise InputError(f"FRAMES {path} has axes {axes!r}; {user} needs a time series "
                         "with t, y and x axes")
    if source.shape[0] < 2:
        raise InputError(f"FRAMES {path} has a single frame; {user} needs at least 2")


def check_frames(source: Source, path: str, size: Sequence[int]) -> None:
    """Refuse an input that is not a time series of frames at least ``size = (H, W)``."""
    check_time_series(source, path, "a matcher")
    frame = tuple(source.shape[-2:])
    if any(f < s for f, s in zip(frame, size)):
        raise InputError(f"FRAMES {path} has frames of {frame[0]}x{frame[1]} pixels, smaller "
                         f"than the matcher input {size[0]}x{size[1]}; give a smaller --size")
