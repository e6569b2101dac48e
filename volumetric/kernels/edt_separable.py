"""One-axis passes of the exact separable Euclidean distance transform.

The squared EDT is separable (Felzenszwalb & Huttenlocher, "Distance
Transforms of Sampled Functions", 2012): a 1D pass along the first axis gives
each voxel the squared distance to the nearest target voxel of its line,
and every further axis applies the lower envelope of parabolas

    out[i] = min_j f[j] + ((i - j) * spacing) ** 2

along that axis. Each pass needs whole lines along its axis only, so an
out-of-core transform runs one pass at a time over blocks that span the
volume along the pass axis. The functions here are vectorised across all
lines of a block; ``inf`` means "no target voxel on this line (yet)".
"""

from __future__ import annotations

import numpy as np


def axis_distance_sq(mask: np.ndarray, axis: int, spacing: float) -> np.ndarray:
    """Squared distance along ``axis`` to the nearest True voxel of the same line.

    Parameters
    ----------
    mask : ndarray of bool
        Target voxels.
    axis : int
        The pass axis.
    spacing : float
        Voxel size along ``axis``.

    Returns
    -------
    ndarray of float64
        Same shape as ``mask``; ``inf`` on lines without a True voxel.
    """
    m = np.moveaxis(np.asarray(mask, dtype=bool), axis, 0)
    shape = m.shape
    m = m.reshape(shape[0], -1)
    steps = np.empty(m.shape, dtype=np.float64)
    nearest = np.full(m.shape[1], -np.inf)  # last True position seen, per line
    for q in range(shape[0]):
        nearest[m[q]] = q
        np.subtract(q, nearest, out=steps[q])
    nearest.fill(np.inf)
    for q in reversed(range(shape[0])):
        nearest[m[q]] = q
        np.minimum(steps[q], nearest - q, out=steps[q])
    steps *= float(spacing)
    steps **= 2
    return np.moveaxis(steps.reshape(shape), 0, axis)


def parabolic_envelope(f: np.ndarray, axis: int, spacing: float) -> np.ndarray:
    """Lower envelope of parabolas along ``axis``: ``min_j f[j] + ((i - j) * spacing)**2``.

    Parameters
    ----------
    f : ndarray
        Squared distances from the previous passes (``inf`` where unknown).
    axis : int
        The pass axis.
    spacing : float
        Voxel size along ``axis``.

    Returns
    -------
    ndarray of float64
        Same shape as ``f``; ``inf`` on lines where ``f`` is all ``inf``.
    """
    g = np.moveaxis(np.asarray(f, dtype=np.float64), axis, 0)
    shape = g.shape
    n = shape[0]
    g = g.reshape(n, -1)
    m = g.shape[1]
    pos = np.arange(n, dtype=np.float64) * float(spacing)
    lifted = g + (pos**2)[:, None]
    finite = np.isfinite(g)
    # Per line: vertices of the parabolas on the envelope and where each begins.
    verts = np.zeros((n, m), dtype=np.int64)
    bounds = np.full((n + 1, m), np.inf)
    count = np.zeros(m, dtype=np.int64)
    for q in range(n):
        rows = np.flatnonzero(finite[q])
        if rows.size == 0:
            continue
        first = count[rows] == 0
        start = rows[first]
        verts[0, start] = q
        bounds[0, start] = -np.inf
        count[start] = 1
        rows = rows[~first]
        height = lifted[q, rows]
        k = count[rows] - 1
        while rows.size:
            v = verts[k, rows]
            cross = (height - lifted[v, rows]) / (2.0 * (pos[q] - pos[v]))
            hidden = cross <= bounds[k, rows]
            keep = ~hidden
            r, kk = rows[keep], k[keep] + 1
            verts[kk, r] = q
            bounds[kk, r] = cross[keep]
            bounds[kk + 1, r] = np.inf
            count[r] = kk + 1
            rows, height, k = rows[hidden], height[hidden], k[hidden] - 1
    out = np.full((n, m), np.inf)
    lines = np.flatnonzero(count)
    k = np.zeros(lines.size, dtype=np.int64)
    for q in range(n):
        moving = np.arange(lines.size)
        while moving.size:
            moving = moving[bounds[k[moving] + 1, lines[moving]] < pos[q]]
            k[moving] += 1
        v = verts[k, lines]
        out[q, lines] = (pos[q] - pos[v]) ** 2 + g[v, lines]
    return np.moveaxis(out.reshape(shape), 0, axis)
