"""Projections along one axis as a tree reduction (pure numpy).

A projection of a large volume is computed in two kinds of steps: each block
is reduced along the axis to a partial (:func:`partial_projection`), then
groups of partials are combined (:func:`combine_partials`) until one is
left. ``max``, ``min`` and ``sum`` combine with themselves; ``mean`` carries
sums and is divided by the axis length once at the end (:func:`finish`).
"""

from __future__ import annotations


import numpy as np

MODES = ("max", "mean", "min", "sum")


def partial_dtype(dtype: np.dtype, mode: str) -> np.dtype:
    """Data type of partial results: the input's for max/min, a wide accumulator for sums."""
    dtype = np.dtype(dtype)
    if mode in ("max", "min"):
        return dtype
    if np.issubdtype(dtype, np.floating) or mode == "mean":
        return np.dtype(np.float64)
    return np.dtype(np.uint64 if np.issubdtype(dtype, np.unsignedinteger) else np.int64)


def output_dtype(dtype: np.dtype, mode: str) -> np.dtype:
    """Data type of the finished projection (``mean`` is float32)."""
    return np.dtype(np.float32) if mode == "mean" else partial_dtype(dtype, mode)


def partial_projection(block: np.ndarray, axis: int, mode: str) -> np.ndarray:
    """Reduce ``block`` along ``axis`` (kept with length 1) into a partial of ``mode``.

    Parameters
    ----------
    block : ndarray
        One block of the volume.
    axis : int
        The projected axis.
    mode : {"max", "mean", "min", "sum"}

    Returns
    -------
    ndarray
        ``block`` reduced along ``axis``, dtype :func:`partial_dtype`.
    """
    if mode not in MODES:
        raise ValueError(f"unknown projection mode {mode!r}")
    acc = partial_dtype(block.dtype, mode)
    if mode == "max":
        return block.max(axis=axis, keepdims=True)
    if mode == "min":
        return block.min(axis=axis, keepdims=True)
    return block.sum(axis=axis, keepdims=True, dtype=acc)


def combine_partials(partials: np.ndarray, axis: int, mode: str) -> np.ndarray:
    """Combine partials stacked along ``axis`` into one (``axis`` kept with length 1)."""
    if mode == "max":
        return partials.max(axis=axis, keepdims=True)
    if mode == "min":
        return partials.min(axis=axis, keepdims=True)
    return partials.sum(axis=axis, keepdims=True, dtype=partials.dtype)


def finish(partial: np.ndarray, mode: str, length: int, dtype: np.dtype) -> np.ndarray:
    """Turn the last partial into the projection (``mean`` divides by ``length``)."""
    if mode == "mean":
        return (partial / length).astype(np.float32)
    return partial.astype(output_dtype(dtype, mode), copy=False)
