"""Volume-wide intensity statistics from a deterministic sample of chunks."""

from __future__ import annotations

from typing import Any

import numpy as np

from volumetric.geometry import BlockGrid


def intensity_stats(
    array: Any,
    *,
    max_chunks: int = 64,
    percentiles: tuple[float, float] = (1.0, 99.8),
    channel_axis: int | None = None,
) -> dict[str, Any]:
    """Percentiles, mean and standard deviation of a (Zarr) array.

    Reads at most ``max_chunks`` chunks spread evenly over the chunk grid,
    so the cost does not grow with the volume and the result is the same on
    every call.

    Parameters
    ----------
    array : zarr.Array or ndarray
        The volume (anything with ``shape``, ``chunks`` and slicing).
    max_chunks : int
        Upper bound on chunks read (per channel with ``channel_axis``).
    percentiles : (float, float)
        Percentiles reported as ``low`` and ``high``.
    channel_axis : int, optional
        When given, statistics are lists with one value per channel.

    Returns
    -------
    dict
        ``low``, ``high``, ``mean``, ``std`` (floats, or lists per channel)
        and ``chunks_read``.
    """
    shape, chunks = list(array.shape), list(getattr(array, "chunks", array.shape))
    if channel_axis is not None:  # sample the same places in every channel
        shape[channel_axis] = chunks[channel_axis] = 1
    grid = BlockGrid(tuple(shape), tuple(chunks))
    indices = list(grid.indices())
    step = max(1, len(indices) // max_chunks)
    picked = indices[::step][:max_chunks]
    boxes = [list(grid.box(i).slices) for i in picked]
    if channel_axis is not None:
        for box in boxes:
            box[channel_axis] = slice(None)
    samples = [np.asarray(array[tuple(box)]) for box in boxes]

    def summarize(values: np.ndarray) -> tuple[float, float, float, float]:
        values = values.astype(np.float64, copy=False)
        low, high = np.percentile(values, percentiles)
        return float(low), float(high), float(values.mean()), float(values.std())

    if channel_axis is None:
        low, high, mean, std = summarize(np.concatenate([s.ravel() for s in samples]))
        return {"low": low, "high": high, "mean": mean, "std": std, "chunks_read": len(picked)}
    per_channel = [
        summarize(np.concatenate([np.moveaxis(s, channel_axis, 0)[c].ravel() for s in samples]))
        for c in range(array.shape[channel_axis])
    ]
    low, high, mean, std = (list(v) for v in zip(*per_channel))
    return {"low": low, "high": high, "mean": mean, "std": std, "chunks_read": len(picked)}
