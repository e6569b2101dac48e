"""Random branching trees of smooth curves: the centre lines of synthetic neurites.

A branch is a random walk with momentum: each step keeps most of the
previous direction and adds a little of a random one, so the curve bends
smoothly. Branches spawn children at random nodes; the radius shrinks
slowly along a branch and from parent to child. Everything is in physical
units (voxel index times voxel size, ``z, y, x`` order).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from volumetric.io import Skeleton

SWC_NEURITE_TYPE = 3  # "basal dendrite" in the SWC standard; any neurite for our purposes
MOMENTUM = 0.85
BRANCH_PROBABILITY = 0.02  # per step
MAX_DEPTH = 3
RADIUS_DECAY = 0.997  # per step


@dataclass(frozen=True)
class Trees:
    """Nodes of one or more trees, in ``z, y, x`` physical coordinates.

    Attributes
    ----------
    zyx : ndarray of float64, shape (n, 3)
    radius : ndarray of float64, shape (n,)
    parent : ndarray of int64, shape (n,)
        Row of each node's parent, -1 for roots.
    brightness : ndarray of float64, shape (n,)
        Relative brightness of the tree each node belongs to.
    """

    zyx: np.ndarray
    radius: np.ndarray
    parent: np.ndarray
    brightness: np.ndarray

    def segments(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Each (child, parent) edge as start/end points, start/end radii and brightness."""
        child = np.flatnonzero(self.parent >= 0)
        par = self.parent[child]
        return (self.zyx[par], self.zyx[child], self.radius[par], self.radius[child],
                self.brightness[child])

    def skeleton(self) -> Skeleton:
        """The trees as an SWC skeleton (ids from 1, ``x, y, z`` order)."""
        n = len(self.radius)
        return Skeleton(
            ids=np.arange(1, n + 1, dtype=np.int64),
            types=np.full(n, SWC_NEURITE_TYPE, dtype=np.int64),
            xyz=self.zyx[:, ::-1].copy(),
            radius=self.radius.copy(),
            parents=np.where(self.parent >= 0, self.parent + 1, -1).astype(np.int64),
        )


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def grow_tree(
    rng: np.random.Generator,
    extent: np.ndarray,
    *,
    step: float,
    radius: tuple[float, float],
    first_row: int,
) -> tuple[list[np.ndarray], list[float], list[int]]:
    """One tree rooted at a random point of the box ``[0, extent)``.

    Returns the nodes' positions, radii and parent rows (numbered from
    ``first_row``, the row of this tree's root among all nodes). A branch
    ends after its planned number of steps or when it leaves the box.
    """
    root = rng.uniform(0.1, 0.9, 3) * extent
    points: list[np.ndarray] = [root]
    radii: list[float] = [float(rng.uniform(0.6 * radius[1], radius[1]))]
    parents: list[int] = [-1]
    main_steps = int(rng.uniform(0.4, 0.8) * float(np.max(extent)) / step) + 2
    # Pending branches: (row of the first node, direction, steps, depth).
    pending = [(0, _unit(rng.standard_normal(3)), main_steps, 0)]
    while pending:
        row, direction, steps, depth = pending.pop()
        for _ in range(steps):
            direction = _unit(MOMENTUM * direction + (1 - MOMENTUM) * _unit(rng.standard_normal(3)))
            point = points[row] + step * direction
            if np.any(point < 0) or np.any(point >= extent):
                break
            points.append(point)
            radii.append(max(radius[0], radii[row] * RADIUS_DECAY))
            parents.append(first_row + row)
            row = len(points) - 1
            if depth < MAX_DEPTH and rng.random() < BRANCH_PROBABILITY:
                side = _unit(direction + 1.2 * _unit(rng.standard_normal(3)))
                pending.append((row, side, int(steps * rng.uniform(0.3, 0.6)) + 2, depth + 1))
    return points, radii, parents


def random_trees(
    rng: np.random.Generator,
    extent: np.ndarray,
    *,
    count: int | None,
    target_volume: float,
    step: float,
    radius: tuple[float, float],
) -> Trees:
    """``count`` trees, or as many as it takes to fill about ``target_volume``.

    The tube volume of a tree is estimated as the sum of ``pi r^2 l`` over
    its segments (overlaps counted twice).
    """
    points: list[np.ndarray] = []
    radii: list[float] = []
    parents: list[int] = []
    brightness: list[float] = []
    volume = 0.0
    trees = 0
    while (trees < count) if count is not None else (volume < target_volume or trees == 0):
        p, r, par = grow_tree(rng, extent, step=step, radius=radius, first_row=len(points))
        points += p
        radii += r
        parents += par
        brightness += [float(rng.uniform(0.6, 1.4))] * len(p)
        volume += float(np.pi * np.sum(np.square(r[1:])) * step)
        trees += 1
    return Trees(
        zyx=np.array(points, dtype=np.float64).reshape(-1, 3),
        radius=np.array(radii, dtype=np.float64),
        parent=np.array(parents, dtype=np.int64),
        brightness=np.array(brightness, dtype=np.float64),
    )
