"""Sliding windows on one global grid, and their assignment to blocks.

Window placement follows MONAI's ``sliding_window_inference`` exactly, so a
block-wise run reproduces a single pass over the whole volume:

- an axis shorter than the window is padded symmetrically up to the window
  (``diff // 2`` before, the rest after) and cropped back afterwards;
- the stride is ``int(window * (1 - overlap))`` (at least 1), or the window
  itself when the window equals the (padded) axis;
- windows start at ``0, stride, 2 * stride, ...`` and the last one is moved
  back so that it ends exactly at the volume's edge.

Every window is *owned* by exactly one block: the block holding its first
voxel inside the volume. A block evaluates only the windows it owns and
accumulates them over its *region* (the bounding box of those windows,
clipped to the volume), which reaches past the block by up to one window::

    block j  +--------+ - - - - +
             | owned  |  spill  :    region of j = owned windows' extent
             | starts |         :
             +--------+ - - - - +

An output block then sums the regions that overlap it. Windows are thus
evaluated once in the whole run, whatever the block size.

Coordinates are voxel indices of the unpadded volume; on a padded axis the
single window starts at a negative index. Everything here is pure Python.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from itertools import product

import numpy as np

from volumetric.geometry import BlockGrid, Box, Coord, as_coord


def scan_interval(size: int, window: int, overlap: float) -> int:
    """MONAI's stride along one axis of (padded) length ``size``.

    Examples
    --------
    >>> scan_interval(100, 32, 0.5), scan_interval(32, 32, 0.5), scan_interval(10, 1, 0.5)
    (16, 32, 1)
    """
    if window == size:
        return window
    return max(int(window * (1 - overlap)), 1)


def axis_starts(size: int, window: int, overlap: float) -> tuple[int, ...]:
    """Window starts along one axis of (padded) length ``size >= window``.

    Examples
    --------
    >>> axis_starts(100, 32, 0.5)
    (0, 16, 32, 48, 64, 68)
    """
    stride = scan_interval(size, window, overlap)
    count = max(0, -(-(size - window) // stride)) + 1  # the first d with d*stride+window >= size
    return tuple(min(d * stride, size - window) for d in range(count))


def _between(starts: tuple[int, ...], lo: int, hi: int) -> tuple[int, ...]:
    """The ``starts`` (sorted) within ``[lo, hi)``."""
    return starts[bisect_left(starts, lo):bisect_left(starts, hi)]


@dataclass(frozen=True)
class WindowGrid:
    """The windows of one volume.

    Parameters
    ----------
    shape : tuple of int
        Spatial shape of the volume.
    window : tuple of int
        Window shape.
    overlap : tuple of float
        Overlap fraction per axis, in ``[0, 1)``.

    Examples
    --------
    >>> g = WindowGrid((40, 10), (16, 16), (0.5, 0.5))
    >>> g.starts
    ((0, 8, 16, 24), (-3,))
    >>> g.count
    4
    """

    shape: Coord
    window: Coord
    overlap: tuple[float, ...]

    def __post_init__(self) -> None:
        shape = as_coord(self.shape)
        window = as_coord(self.window, len(shape))
        overlap = tuple(float(o) for o in self.overlap)
        if len(overlap) == 1:
            overlap *= len(shape)
        if len(overlap) != len(shape):
            raise ValueError(f"overlap {overlap} needs 1 or {len(shape)} values")
        if any(w < 1 for w in window) or any(s < 1 for s in shape):
            raise ValueError(f"invalid window {window} for shape {shape}")
        if any(not 0 <= o < 1 for o in overlap):
            raise ValueError(f"overlap {overlap} must lie in [0, 1)")
        object.__setattr__(self, "shape", shape)
        object.__setattr__(self, "window", window)
        object.__setattr__(self, "overlap", overlap)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def pad_before(self) -> Coord:
        """Padding added before each axis shorter than the window."""
        return tuple(max(w - s, 0) // 2 for s, w in zip(self.shape, self.window))

    @property
    def padded_axes(self) -> tuple[int, ...]:
        """Axes along which the volume is shorter than the window."""
        return tuple(i for i, (s, w) in enumerate(zip(self.shape, self.window)) if w > s)

    @cached_property
    def starts(self) -> tuple[tuple[int, ...], ...]:
        """Window starts per axis in volume coordinates (negative on padded axes), ascending."""
        return tuple(
            tuple(s - pad for s in axis_starts(max(n, w), w, o))
            for n, w, o, pad in zip(self.shape, self.window, self.overlap, self.pad_before)
        )

    @property
    def count(self) -> int:
        """Number of windows in the whole grid."""
        n = 1
        for starts in self.starts:
            n *= len(starts)
        return n

    def box(self, start: Sequence[int]) -> Box:
        """The window starting at ``start`` (may reach outside a padded volume)."""
        return Box.from_shape(self.window, start)

    def owned_by(self, box: Box) -> Iterator[Coord]:
        """Starts of the windows whose first voxel inside the volume lies in ``box``.

        Found by bisection in each axis's starts: a block's windows cost the
        same whatever the volume's size.
        """
        per_axis = []
        for starts, lo, hi in zip(self.starts, box.start, box.stop):
            # max(s, 0) in [lo, hi): a negative start (a padded axis) counts as 0
            owned = _between(starts, lo, hi) if lo > 0 else _between(starts, -2**62, hi)
            per_axis.append(owned if hi > 0 else ())
        return product(*per_axis)

    def touching(self, box: Box) -> Iterator[Coord]:
        """Starts of the windows that overlap ``box`` (``lo - window < start < hi``)."""
        return product(*(_between(starts, lo - w + 1, hi) for starts, w, lo, hi
                         in zip(self.starts, self.window, box.start, box.stop)))


@dataclass(frozen=True)
class WindowPlan:
    """Which windows run, which block owns each one, and what each block writes.

    Parameters
    ----------
    windows : WindowGrid
        The global window grid.
    blocks : BlockGrid
        The output's write blocks (spatial axes only).
    cube_shape : tuple of int, optional
        Shape of the cubes of a sparse run.
    cubes : frozenset of tuple of int, optional
        Indices of the occupied cubes; only windows touching one of them run.
        None runs every window.
    """

    windows: WindowGrid
    blocks: BlockGrid
    cube_shape: Coord | None = None
    cubes: frozenset[Coord] | None = None

    def _listed_cubes_in(self, box: Box) -> Iterator[Coord]:
        """Indices of the listed cubes that ``box`` overlaps (a sparse run only)."""
        assert self.cubes is not None and self.cube_shape is not None
        ranges = [
            range(a // c, (b - 1) // c + 1) for a, b, c in zip(box.start, box.stop, self.cube_shape)
        ]
        return (index for index in product(*ranges) if index in self.cubes)

    def _touches_cube(self, box: Box) -> bool:
        return next(self._listed_cubes_in(box), None) is not None

    def _selected(self, start: Coord) -> bool:
        if self.cubes is None or self.cube_shape is None:
            return True
        box = self.windows.box(start).clip(self.windows.shape)
        return self._touches_cube(box)

    def in_cubes(self, box: Box) -> np.ndarray | None:
        """Which voxels of ``box`` lie in an occupied cube (None in a dense run: all of them).

        A sparse run writes only these: a voxel outside the cubes is covered
        by just some of its windows (those touching a cube), so its blend
        would differ from a dense run's and outline the cubes.
        """
        if self.cubes is None or self.cube_shape is None:
            return None
        inside = np.zeros(box.shape, dtype=bool)
        for index in self._listed_cubes_in(box):
            cube = Box.from_shape(self.cube_shape, [i * c for i, c in zip(index, self.cube_shape)])
            inside[cube.intersect(box).relative_to(box)] = True
        return inside

    def windows_of(self, index: Sequence[int]) -> list[Coord]:
        """Starts of the windows that block ``index`` evaluates."""
        owned = self.windows.owned_by(self.blocks.box(index))
        return [s for s in owned if self._selected(s)]

    def region_of(self, index: Sequence[int]) -> Box | None:
        """The part of the volume the windows of block ``index`` cover (None: no windows)."""
        starts = self.windows_of(index)
        if not starts:
            return None
        lo = tuple(min(axis) for axis in zip(*starts))
        hi = tuple(max(axis) for axis in zip(*starts))
        return Box(lo, tuple(h + w for h, w in zip(hi, self.windows.window))).clip(
            self.windows.shape
        )

    def evaluation_blocks(self) -> list[Coord]:
        """Indices of the blocks that own at least one selected window (phase 1)."""
        if self.cubes is None or self.cube_shape is None:
            candidates: set[Coord] = set(self.blocks.indices())
        else:
            candidates = set()
            window = self.windows.window
            for cube in self.cubes:
                first = tuple(max(i * c - w + 1, 0) for i, c, w in zip(cube, self.cube_shape, window))
                stop = tuple((i + 1) * c for i, c in zip(cube, self.cube_shape))
                candidates.update(self.blocks.indices_touching(Box(first, stop)))
        return sorted(i for i in candidates if self.windows_of(i))

    def sources_of(self, index: Sequence[int]) -> list[tuple[Coord, Box]]:
        """Phase-1 blocks whose regions overlap output block ``index``, with those regions."""
        box = self.blocks.box(index)
        reach = Box(tuple(a - w + 1 for a, w in zip(box.start, self.windows.window)), box.stop)
        found = []
        for j in self.blocks.indices_touching(reach):
            region = self.region_of(j)
            if region is not None and not region.intersect(box).empty:
                found.append((j, region))
        return found

    def output_blocks(self, evaluated: Sequence[Coord]) -> list[Coord]:
        """Indices of the output blocks some window covers (in a cube, in a sparse run),
        given the phase-1 blocks."""
        touched: set[Coord] = set()
        for j in evaluated:
            region = self.region_of(j)
            if region is not None:
                touched.update(self.blocks.indices_touching(region))
        if self.cubes is not None and self.cube_shape is not None:
            touched = {i for i in touched if self._touches_cube(self.blocks.box(i))}
        return sorted(touched)

    def selected_count(self) -> int:
        """Number of windows the plan runs: the minimum any correct run evaluates."""
        if self.cubes is None or self.cube_shape is None:
            return self.windows.count
        chosen: set[Coord] = set()
        for cube in self.cubes:
            box = Box(
                tuple(i * c for i, c in zip(cube, self.cube_shape)),
                tuple((i + 1) * c for i, c in zip(cube, self.cube_shape)),
            ).clip(self.windows.shape)
            chosen.update(self.windows.touching(box))
        return len(chosen)
