"""The search behind ``vol discover``: occupied cubes connected to seed cubes.

The result is defined by :func:`level_search`, a breadth-first search level
by level: the kept cubes are the occupied cubes connected to a seed cube
through occupied cubes, and the cubes read are the seed cubes plus every
neighbour of a kept cube. :func:`region_search` reaches exactly these counts
with far fewer tasks and no waiting between levels: the cube grid is cut
into *regions* (e.g. 4 x 4 x 4 cubes); a task owns one region, enters it at
the cubes handed to it and runs the search inside it, reading a cube only
when the level search would (it is a seed or a neighbour of an occupied
cube), and returns the counts plus the neighbours that lie in other regions.
Those become the entries of further tasks, submitted as soon as a task ends.
At most one task per region runs at a time and each task learns which of
its region's cubes were already reached, so every cube is read at most once;
since only connectivity decides, the result does not depend on the order in
which tasks finish, the region shape or the number of workers.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from itertools import product
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from volumetric.engine import layout_hash, run_expanding
from volumetric.geometry import BlockGrid, Box, Coord
from volumetric.io.sources import Source
from volumetric.kernels.occupancy import counts_per_cube

if TYPE_CHECKING:
    from distributed import Client

SAVE_SECONDS = 10.0

Count = Callable[[list[Coord]], dict[Coord, int]]


@dataclass(frozen=True)
class CubeReader:
    """Foreground counts of cubes of one time point and channel of a source.

    ``fixed`` holds the index of every non-spatial axis of the source (the
    chosen time point and channel) and None for spatial axes. Called with a
    box of whole cubes (a block task of the full scan), it counts them all.
    """

    source: Source
    fixed: tuple[int | None, ...]
    shape: Coord
    cube_shape: Coord
    threshold: float

    @property
    def grid(self) -> BlockGrid:
        return BlockGrid(self.shape, self.cube_shape)

    def _read(self, box: Box) -> np.ndarray:
        spatial = iter(zip(box.start, box.stop))
        bounds = [next(spatial) if f is None else (f, f + 1) for f in self.fixed]
        full = Box(tuple(a for a, _ in bounds), tuple(b for _, b in bounds))
        return self.source.read(full).reshape(box.shape)

    def _count_run(self, first: Coord, last: Coord) -> dict[Coord, int]:
        """Counts of the cubes from ``first`` to ``last`` (inclusive), read at once."""
        box = Box(self.grid.box(first).start, self.grid.box(last).stop)
        counts = counts_per_cube(self._read(box), self.cube_shape, self.threshold)
        return {
            tuple(f + i for f, i in zip(first, index)): int(n)
            for index, n in np.ndenumerate(counts)
        }

    def __call__(self, group: Box) -> dict[Coord, int]:
        inside = list(self.grid.indices_touching(group))
        return self._count_run(inside[0], inside[-1])

    def count(self, cubes: Iterable[Coord]) -> dict[Coord, int]:
        """Counts of ``cubes``; a run of consecutive cubes along the last axis is read at once."""
        runs: list[list[Coord]] = []
        for c in sorted(cubes):
            if runs and runs[-1][-1][:-1] == c[:-1] and runs[-1][-1][-1] + 1 == c[-1]:
                runs[-1].append(c)
            else:
                runs.append([c])
        return {c: n for run in runs for c, n in self._count_run(run[0], run[-1]).items()}


class CountStore:
    """Cube counts known so far, saved next to the output (``OUT.partial``) for resume.

    Counts depend only on what is read and how it is counted, so a store is
    reused by any later search of the same image, time point, channel, cube
    shape and threshold.
    """

    def __init__(self, out: Path, source: Source, fixed: tuple[int | None, ...],
                 cube_shape: Coord, threshold: float):
        self.path = out.with_name(out.name + ".partial")
        self.hash = layout_hash({"source": source.identity(), "fixed": list(fixed),
                                 "cube_shape": list(cube_shape), "threshold": float(threshold)})
        self.counts: dict[Coord, int] = {}
        try:
            saved = json.loads(self.path.read_text())
            if saved.get("hash") == self.hash:
                self.counts = {tuple(c[:-1]): int(c[-1]) for c in saved["counts"]}
        except (OSError, ValueError, KeyError, TypeError):
            pass

    def save(self) -> None:
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        rows = [[*c, n] for c, n in sorted(self.counts.items())]
        tmp.write_text(json.dumps({"hash": self.hash, "counts": rows}))
        os.replace(tmp, self.path)


def level_search(
    seed_cubes: Iterable[Coord], grid: BlockGrid, rank: int, min_voxels: int, count: Count
) -> tuple[list[Coord], set[Coord], int]:
    """Breadth-first search level by level from the seed cubes.

    Parameters
    ----------
    seed_cubes : iterable of tuple of int
        Where the search starts.
    grid : BlockGrid
        The cube grid.
    rank : int
        Axes along which neighbouring cubes may differ (1, 2, 3: 6-, 18-, 26-connectivity).
    min_voxels : int
        Count that makes a cube occupied.
    count : callable
        ``count(cubes)`` returns the count of each listed cube; each cube is
        asked for once.

    Returns
    -------
    kept : list of tuple of int
        The occupied cubes connected to a seed cube, sorted.
    read : set of tuple of int
        Every cube whose count was asked for.
    levels : int
        The number of levels searched.
    """
    frontier = sorted(set(seed_cubes))
    seen = set(frontier)
    kept: list[Coord] = []
    levels = 0
    while frontier:
        counts = count(frontier)
        occupied = [c for c in frontier if counts[c] >= min_voxels]
        kept.extend(occupied)
        following = {n for c in occupied for n in grid.neighbours(c, rank)} - seen
        seen |= following
        frontier = sorted(following)
        levels += 1
    return sorted(kept), seen, levels


def expand_region(
    entries: Iterable[Coord],
    reached: Iterable[Coord],
    region: Box,
    grid: BlockGrid,
    rank: int,
    min_voxels: int,
    count: Count,
) -> tuple[dict[Coord, int], set[Coord]]:
    """The search of :func:`level_search` inside one region of the cube grid.

    Parameters
    ----------
    entries : iterable of tuple of int
        Cubes of the region to search from (seeds, or neighbours of occupied
        cubes found elsewhere).
    reached : iterable of tuple of int
        Cubes of the region searched before; they are not asked for again.
    region : Box
        The region, in cube indices.
    grid, rank, min_voxels, count
        As in :func:`level_search`.

    Returns
    -------
    counts : dict
        The count of every cube searched now: the entries and the cubes
        reached from them inside the region.
    outside : set of tuple of int
        Neighbours of occupied cubes that lie outside the region.
    """
    frontier = sorted(set(entries))
    seen = set(reached) | set(frontier)
    counts: dict[Coord, int] = {}
    outside: set[Coord] = set()
    while frontier:
        found = count(frontier)
        counts.update(found)
        following: set[Coord] = set()
        for c in frontier:
            if found[c] < min_voxels:
                continue
            for n in grid.neighbours(c, rank):
                if not all(a <= i < b for i, a, b in zip(n, region.start, region.stop)):
                    outside.add(n)
                elif n not in seen:
                    following.add(n)
        seen |= following
        frontier = sorted(following)
    return counts, outside


@dataclass(frozen=True)
class Region:
    """Work item of :class:`ExpandRegion`: a region, where to enter it, what is known there."""

    box: Box
    entries: tuple[Coord, ...]
    reached: frozenset[Coord]
    known: tuple[tuple[Coord, int], ...]

    def __str__(self) -> str:
        return f"of cubes {self.box}"


@dataclass(frozen=True)
class ExpandRegion:
    """Task: run :func:`expand_region` for one :class:`Region`, reading only unknown counts."""

    reader: CubeReader
    rank: int
    min_voxels: int

    def __call__(self, item: Region) -> tuple[dict[Coord, int], set[Coord]]:
        known = dict(item.known)

        def count(cubes: list[Coord]) -> dict[Coord, int]:
            found = self.reader.count(c for c in cubes if c not in known)
            return {c: known[c] if c in known else found[c] for c in cubes}

        return expand_region(item.entries, item.reached, item.box, self.reader.grid, self.rank,
                             self.min_voxels, count)


def region_search(
    seed_cubes: Sequence[Coord],
    task: ExpandRegion,
    store: CountStore,
    *,
    region_shape: Sequence[int],
    client: Client,
    progress: bool = True,
) -> int:
    """Count every cube :func:`level_search` would read, one region per task.

    Parameters
    ----------
    seed_cubes : sequence of tuple of int
        Where the search starts.
    task : ExpandRegion
        The region task (reader, connectivity and occupancy).
    store : CountStore
        Counts known before (not read again); the new ones are added and
        saved every ``SAVE_SECONDS`` and at the end.
    region_shape : sequence of int
        Region shape in cubes.
    client : distributed.Client
        Where the tasks run.
    progress : bool
        Print a progress line.

    Returns
    -------
    int
        The number of tasks run.
    """
    regions = BlockGrid(task.reader.grid.grid_shape, tuple(region_shape))
    reached: dict[Coord, set[Coord]] = {}
    waiting: dict[Coord, set[Coord]] = {}
    busy: set[Coord] = set()
    last_save = time.monotonic()

    def enter(cubes: Iterable[Coord]) -> None:
        for c in cubes:
            r = regions.index_of(c)
            if c not in reached.setdefault(r, set()):
                waiting.setdefault(r, set()).add(c)

    def start() -> list[Region]:
        items = []
        for r in sorted(set(waiting) - busy):
            box = regions.box(r)
            entries = tuple(sorted(waiting.pop(r)))
            cubes = product(*(range(a, b) for a, b in zip(box.start, box.stop)))
            known = tuple((c, store.counts[c]) for c in cubes
                          if c in store.counts and c not in reached[r])
            items.append(Region(box, entries, frozenset(reached[r]), known))
            reached[r].update(entries)
            busy.add(r)
        return items

    def follow(item: Region, result: tuple[dict[Coord, int], set[Coord]]) -> list[Region]:
        nonlocal last_save
        counts, outside = result
        r = regions.index_of(item.box.start)
        busy.discard(r)
        store.counts.update(counts)
        reached[r].update(counts)
        left = waiting.pop(r, set()) - reached[r]
        if left:
            waiting[r] = left
        enter(outside)
        if time.monotonic() - last_save > SAVE_SECONDS:
            store.save()
            last_save = time.monotonic()
        return start()

    enter(seed_cubes)
    tasks = run_expanding(task, start(), follow, client=client, label="discover",
                          progress=progress)
    store.save()
    return tasks
