"""Rasterise traced neurons (segments with radii) into a binary block (pure numpy).

Each segment is a capsule with linearly varying radius: a voxel belongs to
it when the distance from the voxel centre to the nearest point of the
segment is at most the radius interpolated at that point (so the ends are
spheres of the node radii, and a node without parent is a sphere). All
geometry is physical: voxel ``i`` along an axis has its centre at
``i * spacing``, the NGFF convention without translation.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# Columns of a segment table: start point, end point (z, y, x, physical), radii.
SEGMENT_COLUMNS = ("z0", "y0", "x0", "z1", "y1", "x1", "r0", "r1")


def segment_bounds(segments: np.ndarray, spacing: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Voxel index bounds ``[lo, hi)`` of every segment's bounding box, radius included.

    Parameters
    ----------
    segments : ndarray, shape (n, 8)
        Segment table (:data:`SEGMENT_COLUMNS`).
    spacing : sequence of float
        Voxel size (z, y, x).

    Returns
    -------
    lo, hi : ndarray of int64, shape (n, 3)
    """
    spacing = np.asarray(spacing, dtype=np.float64)
    seg = np.asarray(segments, dtype=np.float64).reshape(-1, 8)
    radius = np.maximum(seg[:, 6], seg[:, 7])[:, None]
    low = np.minimum(seg[:, 0:3], seg[:, 3:6]) - radius
    high = np.maximum(seg[:, 0:3], seg[:, 3:6]) + radius
    return np.ceil(low / spacing).astype(np.int64), np.floor(high / spacing).astype(np.int64) + 1


def render_segments(
    start: Sequence[int], shape: Sequence[int], segments: np.ndarray, spacing: Sequence[float]
) -> np.ndarray:
    """Binary mask of the voxels of box ``[start, start + shape)`` inside any segment.

    Parameters
    ----------
    start : sequence of int
        First voxel (z, y, x) of the box.
    shape : sequence of int
        Box shape.
    segments : ndarray, shape (n, 8)
        Segment table (:data:`SEGMENT_COLUMNS`), physical units.
    spacing : sequence of float
        Voxel size (z, y, x).

    Returns
    -------
    ndarray of bool, shape ``shape``
    """
    start = np.asarray(start, dtype=np.int64)
    stop = start + np.asarray(shape, dtype=np.int64)
    spacing = np.asarray(spacing, dtype=np.float64)
    out = np.zeros(tuple(int(s) for s in shape), dtype=bool)
    seg = np.asarray(segments, dtype=np.float64).reshape(-1, 8)
    lo, hi = segment_bounds(seg, spacing)
    lo, hi = np.maximum(lo, start), np.minimum(hi, stop)
    for s in np.flatnonzero(np.all(lo < hi, axis=1)):
        a, b = seg[s, 0:3], seg[s, 3:6]
        r0, r1 = seg[s, 6], seg[s, 7]
        axes = [np.arange(lo[s, d], hi[s, d]) * spacing[d] for d in range(3)]
        pz, py, px = np.meshgrid(*axes, indexing="ij", sparse=True)
        ab = b - a
        length2 = float(ab @ ab)
        rel = (pz - a[0], py - a[1], px - a[2])
        if length2 > 0:
            t = np.clip((rel[0] * ab[0] + rel[1] * ab[1] + rel[2] * ab[2]) / length2, 0.0, 1.0)
        else:
            t = np.zeros(1)
        dist2 = sum((rel[d] - t * ab[d]) ** 2 for d in range(3))
        radius = r0 + t * (r1 - r0)
        inside = dist2 <= radius**2
        window = tuple(slice(int(lo[s, d] - start[d]), int(hi[s, d] - start[d])) for d in range(3))
        out[window] |= inside
    return out
