"""Volume-wide intensity statistics from a deterministic sample of chunks."""

from __future__ import annotations

from typing import Any

import numpy as np

from volumetric.geometry import BlockGrid

# Percentiles of the display window written into every image's omero metadata.
WINDOW_PERCENTILES = (0.1, 99.9)


def sample_chunks(array: Any, *, max_chunks: int = 64,
                  channel_axis: int | None = None) -> tuple[list[np.ndarray], int]:
    """The values of at most ``max_chunks`` chunks spread evenly over the chunk grid.

    Parameters
    ----------
    array : zarr.Array or ndarray
        The volume (anything with ``shape``, ``chunks`` and slicing).
    max_chunks : int
        Upper bound on chunks read (per channel with ``channel_axis``).
    channel_axis : int, optional
        When given, the same places are read in every channel.

    Returns
    -------
    values : list of ndarray
        One flat array of sampled values per channel (one in all without ``channel_axis``).
    chunks_read : int
        How many chunks were read (per channel).
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
    if channel_axis is None:
        return [np.concatenate([s.ravel() for s in samples])], len(picked)
    return [np.concatenate([np.moveaxis(s, channel_axis, 0)[c].ravel() for s in samples])
            for c in range(array.shape[channel_axis])], len(picked)


def intensity_stats(
    array: Any,
    *,
    max_chunks: int = 64,
    percentiles: tuple[float, float] = (1.0, 99.8),
    channel_axis: int | None = None,
) -> dict[str, Any]:
    """Percentiles, mean and standard deviation of a (Zarr) array.

    Reads at most ``max_chunks`` chunks spread evenly over the chunk grid
    (see :func:`sample_chunks`), so the cost does not grow with the volume
    and the result is the same on every call.

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
    channels, read = sample_chunks(array, max_chunks=max_chunks, channel_axis=channel_axis)

    def summarize(values: np.ndarray) -> tuple[float, float, float, float]:
        values = values.astype(np.float64, copy=False)
        low, high = np.percentile(values, percentiles)
        return float(low), float(high), float(values.mean()), float(values.std())

    per_channel = [summarize(values) for values in channels]
    if channel_axis is None:
        low, high, mean, std = per_channel[0]
        return {"low": low, "high": high, "mean": mean, "std": std, "chunks_read": read}
    low, high, mean, std = (list(v) for v in zip(*per_channel))
    return {"low": low, "high": high, "mean": mean, "std": std, "chunks_read": read}


def display_windows(
    array: Any, *, channel_axis: int | None = None, max_chunks: int = 16,
    percentiles: tuple[float, float] = WINDOW_PERCENTILES,
) -> list[dict[str, float]]:
    """The omero display window of each channel, from the data's percentiles.

    ``start``/``end`` are the ``percentiles`` of the finite sampled values
    (``end`` falls back to the sampled maximum, then ``start + 1``, when they
    coincide, as in a sparse mask); ``min``/``max`` are the data type's range
    for integers and the sampled extremes for floats.

    Parameters
    ----------
    array : zarr.Array or ndarray
        The image (anything with ``shape``, ``chunks``, ``dtype`` and slicing).
    channel_axis : int, optional
        One window per channel along this axis; one window in all without it.
    max_chunks : int
        Chunks read per channel (see :func:`sample_chunks`).
    percentiles : (float, float)
        Percentiles of ``start`` and ``end``.

    Returns
    -------
    list of dict
        ``{"min", "max", "start", "end"}`` per channel, plain floats.

    Examples
    --------
    >>> display_windows(np.arange(1001, dtype=np.uint16), percentiles=(1.0, 99.0))
    [{'min': 0.0, 'max': 65535.0, 'start': 10.0, 'end': 990.0}]
    """
    channels, _ = sample_chunks(array, max_chunks=max_chunks, channel_axis=channel_axis)
    integer = np.issubdtype(array.dtype, np.integer)
    windows = []
    for values in channels:
        if integer:
            values = _without_overflow(values)
        else:
            values = values.astype(np.float64, copy=False)
            values = values[np.isfinite(values)]
        if values.size == 0:
            values = np.zeros(1)
        start, end = (float(v) for v in np.percentile(values, percentiles))
        top = float(values.max())
        end = end if end > start else top if top > start else start + 1.0
        if integer:
            info = np.iinfo(array.dtype)
            low, high = float(info.min), float(info.max)
        else:
            low, high = min(float(values.min()), start), max(top, end)
        windows.append({"min": low, "max": high, "start": start, "end": end})
    return windows


def _without_overflow(values: np.ndarray) -> np.ndarray:
    """Integer ``values`` in a type where numpy's percentile interpolation cannot overflow.

    ``np.percentile`` subtracts neighbouring order statistics in the input's
    own type: for unsigned values the difference fits, but signed ones far
    apart wrap around, so int8 and int16 go to int32 and int32 to int64.
    64-bit integers go to float64, as other values do.
    """
    size = values.dtype.itemsize
    if size >= 8:
        return values.astype(np.float64)
    if np.issubdtype(values.dtype, np.unsignedinteger):
        return values
    return values.astype(np.int32 if size < 4 else np.int64)
