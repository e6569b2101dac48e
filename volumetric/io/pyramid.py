"""Pyramid planning: which axes are halved at each level."""

from __future__ import annotations

import math
from collections.abc import Sequence

from volumetric.io.ome import SPATIAL_AXES, ImageMeta, LevelSpec


def plan_levels(shape: Sequence[int], meta: ImageMeta, n_levels: int) -> list[LevelSpec]:
    """Level specs for a 2x pyramid of up to ``n_levels`` levels (level 0 included).

    ``y`` and ``x`` are halved at every level; ``z`` only once its voxel size
    would no longer be larger than the new in-plane size by more than a
    factor sqrt(2), so anisotropic stacks first become roughly isotropic.
    Axes of length 1 and ``t``/``c`` are never reduced; once no axis can
    shrink, no further level is added, so fewer levels may be returned.

    Examples
    --------
    >>> meta = ImageMeta("zyx", (4.0, 1.0, 1.0))
    >>> [lv.factors for lv in plan_levels((64, 512, 512), meta, 4)]
    [(1, 1, 1), (1, 2, 2), (1, 4, 4), (2, 8, 8)]
    >>> [lv.shape for lv in plan_levels((2, 4, 3), ImageMeta("zyx", (1.0, 1.0, 1.0)), 5)]
    [(2, 4, 3), (1, 2, 2), (1, 1, 1)]
    """
    if n_levels < 1:
        raise ValueError("a pyramid has at least one level")
    shape = tuple(int(s) for s in shape)
    spatial = dict(zip(meta.spatial_axes, meta.voxel_size))
    factors = [1] * len(shape)
    levels = [LevelSpec("0", shape, tuple(factors))]
    for k in range(1, n_levels):
        inplane = min(spatial.get("y", 1.0), spatial.get("x", 1.0))
        new_inplane = inplane * 2
        step = []
        for axis, size in zip(meta.axes, levels[-1].shape):
            if axis not in SPATIAL_AXES or size <= 1:
                step.append(1)
            elif axis == "z" and spatial["z"] * math.sqrt(2) > new_inplane:
                step.append(1)
            else:
                step.append(2)
        if all(f == 1 for f in step):
            break
        for axis, f in zip(meta.axes, step):
            if axis in spatial:
                spatial[axis] *= f
        factors = [a * b for a, b in zip(factors, step)]
        prev = levels[-1].shape
        levels.append(
            LevelSpec(str(k), tuple(-(-s // f) for s, f in zip(prev, step)), tuple(factors))
        )
    return levels
