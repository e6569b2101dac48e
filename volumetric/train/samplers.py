"""Where training patches come from: grid tiles, uniform random and foreground-weighted starts.

Every sampler works on a list of *domains*: boxes of valid patch start
corners, one or more per volume (``pair``), disjoint within a volume. A
volume is sampled over ``(t, [z,] y, x)`` (see :mod:`volumetric.train.splits`).
A patch may start anywhere in a domain and then lies inside the volume, inside
its train or validation region, and has its centre voxel (``start +
patch // 2``) in a listed cube when a cube list restricts sampling. Samplers
are picklable value objects; a location depends only on the draw number
(the sample's index counted over all epochs), the generator passed in and
the sampler's own settings.
"""

from __future__ import annotations

import math
import operator
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import product
from typing import Any

import numpy as np

from volumetric.errors import InputError
from volumetric.geometry import BlockGrid, Box, Coord

SAMPLERS = ("random", "grid", "foreground")
CELL_CACHE_BYTES = 32 * 2**20

# Returns the foreground voxels (bool) of a box of one pair's target.
ReadForeground = Callable[[int, Box], np.ndarray]


@dataclass(frozen=True)
class Domain:
    """Patch start corners ``box`` of volume ``pair`` whose patches have shape ``patch``."""

    pair: int
    box: Box
    patch: Coord


def domains_of(pair: int, region: Box, patch: Sequence[int],
               cubes: Sequence[Box] | None) -> list[Domain]:
    """Start-corner boxes of the patches inside ``region`` (centred in ``cubes`` when given)."""
    patch = tuple(patch)
    starts = Box(region.start, tuple(b - p + 1 for b, p in zip(region.stop, patch)))
    if cubes is None:
        return [Domain(pair, starts, patch)] if not starts.empty else []
    half = tuple(p // 2 for p in patch)
    boxes = (cube.shift(tuple(-h for h in half)).intersect(starts) for cube in cubes)
    return [Domain(pair, box, patch) for box in boxes if not box.empty]


def _pick(weights: np.ndarray, unit: int) -> tuple[int, int]:
    """Unit number ``unit`` among ``weights`` units: (which entry, offset inside it)."""
    ends = np.cumsum(weights)
    entry = int(np.searchsorted(ends, unit, side="right"))
    return entry, unit - int(ends[entry] - weights[entry])


def _draw(weights: np.ndarray, rng: np.random.Generator) -> tuple[int, int]:
    """A uniformly drawn unit among ``weights`` units: (which entry, offset inside it)."""
    return _pick(weights, int(rng.integers(int(weights.sum()))))


def _corner(box: Box, flat: int) -> Coord:
    return tuple(a + int(o) for a, o in zip(box.start, np.unravel_index(flat, box.shape)))


class RandomSampler:
    """Patch starts drawn uniformly over all domains."""

    def __init__(self, domains: Sequence[Domain]) -> None:
        self.domains = list(domains)
        self.sizes = np.array([d.box.size for d in self.domains], dtype=np.int64)

    def location(self, draw: int, rng: np.random.Generator,
                 read_foreground: ReadForeground) -> tuple[int, Coord]:
        entry, offset = _draw(self.sizes, rng)
        domain = self.domains[entry]
        return domain.pair, _corner(domain.box, offset)


class GridSampler:
    """Tiles of the patch shape covering each region, each tile once per lap, shuffled.

    The last tile along an axis is shifted back to end at the region's face.
    With cubes, only the tiles touching a listed cube are kept (found from
    the cubes, so the cost does not grow with the volume). Draws walk through
    all tiles in laps; each lap visits every tile once, in an order shuffled
    by ``(seed, lap)``, so epochs shorter than a lap continue where the
    previous one stopped instead of repeating the same tiles.
    """

    def __init__(self, regions: Sequence[tuple[int, Box, Coord, Sequence[Box] | None]],
                 *, seed: int = 0) -> None:
        self.seed = int(seed)
        self.parts: list[tuple[int, list[np.ndarray], np.ndarray | None]] = []
        counts = []
        for pair, region, patch, cubes in regions:
            starts = [_tile_starts(a, b, p) for a, b, p in zip(region.start, region.stop, patch)]
            chosen = None
            if cubes is None:
                counts.append(int(np.prod([len(s) for s in starts])))
            else:
                keys: set[tuple[int, ...]] = set()
                for cube in cubes:
                    keys.update(product(*(
                        range(int(np.searchsorted(s, lo - p, "right")),
                              int(np.searchsorted(s, hi, "left")))
                        for s, lo, hi, p in zip(starts, cube.start, cube.stop, patch)
                    )))
                chosen = np.array(sorted(keys), dtype=np.int64).reshape(-1, len(starts))
                counts.append(len(chosen))
            self.parts.append((pair, starts, chosen))
        self.counts = np.array(counts, dtype=np.int64)

    def __len__(self) -> int:
        return int(self.counts.sum())

    def location(self, draw: int, rng: np.random.Generator,
                 read_foreground: ReadForeground) -> tuple[int, Coord]:
        lap, k = divmod(draw, len(self))
        part, k = _pick(self.counts, _shuffled(k, len(self), [self.seed, lap]))
        pair, starts, chosen = self.parts[part]
        tile = chosen[k] if chosen is not None else np.unravel_index(k, [len(s) for s in starts])
        return pair, tuple(int(s[i]) for s, i in zip(starts, tile))


def _shuffled(k: int, n: int, seed: list[int]) -> int:
    """Entry ``k`` of a permutation of ``range(n)`` chosen by ``seed``, without listing it.

    An affine map ``k -> (a k + b) mod n`` with ``a`` coprime to ``n`` is a
    permutation; it needs no memory however many tiles there are.
    """
    if n == 1:
        return 0
    rng = np.random.default_rng(seed)
    a = int(rng.integers(1, n))
    while math.gcd(a, n) != 1:
        a = int(rng.integers(1, n))
    return (a * k + int(rng.integers(n))) % n


def _tile_starts(lo: int, hi: int, size: int) -> np.ndarray:
    starts = list(range(lo, hi - size + 1, size))
    if starts[-1] != hi - size:
        starts.append(hi - size)
    return np.array(starts, dtype=np.int64)


_COMPARISONS = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le,
                "==": operator.eq, "!=": operator.ne}


def parse_foreground(spec: str) -> tuple[str, float]:
    """Split a foreground rule such as ``">0"`` or ``"<10"`` into (operator, value)."""
    spec = spec.replace(" ", "")
    for op in sorted(_COMPARISONS, key=len, reverse=True):
        if spec.startswith(op):
            try:
                return op, float(spec[len(op):])
            except ValueError:
                break
    raise InputError(
        f"foreground rule {spec!r} is not a comparison like '>0', '>=0.5' or '<10'"
    )


def foreground_of(target: np.ndarray, rule: tuple[str, float]) -> np.ndarray:
    """Voxels of ``target`` (C, *spatial) where any channel satisfies ``rule``."""
    op, value = rule
    return _COMPARISONS[op](target, value).any(axis=0)


class ForegroundSampler:
    """Patches centred on a foreground voxel with probability ``probability``, else on background.

    Which draws are foreground is stratified: among the first N draws,
    ``round(N * probability)`` are, so the requested fraction is met within
    ``0.5 / N`` (within ``1 / N`` over any N consecutive draws, such as one
    epoch). A coarse index (foreground count per target chunk and
    domain) is built once; a draw then picks a voxel uniformly among all
    foreground (or background) centres, reading one chunk-sized cell (the
    last few cells read stay in a small per-process cache).
    """

    def __init__(self, domains: Sequence[Domain], probability: float,
                 chunks: Sequence[Coord], read_foreground: ReadForeground, *, what: str) -> None:
        if not 0 <= probability <= 1:
            raise InputError(f"foreground probability {probability} must lie in [0, 1]")
        self.probability = float(probability)
        cells: list[tuple[int, Box]] = []
        for d in domains:
            centres = d.box.shift(tuple(p // 2 for p in d.patch))
            grid = BlockGrid(tuple(centres.stop), chunks[d.pair])
            cells += [(d.pair, grid.box(i).intersect(centres))
                      for i in grid.indices_touching(centres)]
        self.cells = cells
        self.patches = {d.pair: d.patch for d in domains}
        self.sizes = np.array([box.size for _, box in cells], dtype=np.int64)
        self.foreground = np.array(
            [int(read_foreground(pair, box).sum()) for pair, box in cells], dtype=np.int64
        )
        if self.probability > 0 and self.foreground.sum() == 0:
            raise InputError(f"no foreground voxel ({what}) where a patch can be centred")
        if self.probability < 1 and self.foreground.sum() == self.sizes.sum():
            raise InputError(
                f"no background voxel (not {what}) where a patch can be centred; "
                "raise the foreground probability to 1 or use the random sampler"
            )
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_cache": OrderedDict()}

    def _cell(self, entry: int, read_foreground: ReadForeground) -> np.ndarray:
        """Foreground voxels of a cell, from a small per-process cache."""
        if entry in self._cache:
            self._cache.move_to_end(entry)
            return self._cache[entry]
        voxels = read_foreground(*self.cells[entry])
        self._cache[entry] = voxels
        while sum(v.nbytes for v in self._cache.values()) > CELL_CACHE_BYTES:
            self._cache.popitem(last=False)
        return voxels

    def is_foreground(self, draw: int) -> bool:
        """Whether draw number ``draw`` is centred on foreground."""
        p = self.probability
        return int(np.floor((draw + 1) * p + 0.5)) > int(np.floor(draw * p + 0.5))

    def location(self, draw: int, rng: np.random.Generator,
                 read_foreground: ReadForeground) -> tuple[int, Coord]:
        wanted = self.is_foreground(draw)
        counts = self.foreground if wanted else self.sizes - self.foreground
        entry, k = _draw(counts, rng)
        pair, cell = self.cells[entry]
        if counts[entry] == self.sizes[entry]:
            centre = _corner(cell, k)
        else:
            voxels = self._cell(entry, read_foreground)
            centre = _corner(cell, int(np.flatnonzero(voxels == wanted)[k]))
        return pair, tuple(c - p // 2 for c, p in zip(centre, self.patches[pair]))

