"""Sparse cube discovery: breadth-first search over occupied cubes from seed points.

The volume (one time point and channel) is cut into cubes. A cube is
*occupied* when at least ``min_voxels`` of its voxels are above
``threshold``. The result is every occupied cube connected to a seed's cube
through occupied cubes (6-, 18- or 26-connectivity between cubes; in 2D,
6 means 4-connectivity and 18 or 26 mean 8).

The search runs level by level: the cubes of one frontier are counted in
parallel as block tasks, the occupied ones are kept, and their neighbours
that were never read form the next frontier. Each cube is read at most
once, so the cubes read are the seed cubes plus the kept cubes and their
neighbours, never the empty bulk. Nearby frontier cubes are counted by one
task (a *group*: a box of whole cubes) to keep the number of tasks low; the
result does not depend on grouping or on the number of workers. ``scan_all``
counts every cube instead (the baseline): with seeds it returns the same
cubes as the search, without seeds every occupied cube.

Resume: counts are saved to ``OUT.json.partial`` after every batch of
tasks; rerunning the same command reuses them (for any seeds, connectivity
or ``min_voxels``, since counts depend only on the image, the time point
and channel, the cube shape and the threshold).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from volumetric.engine import layout_hash, run_blocks, session
from volumetric.errors import DestinationError, InputError
from volumetric.geometry import BlockGrid, Box, Coord
from volumetric.io.cubes import CubeList, store_cubes, write_cubes
from volumetric.io.ome import open_image
from volumetric.io.sources import Source
from volumetric.io.swc import read_swc
from volumetric.kernels.occupancy import counts_per_cube
from volumetric.ops.common import grow_block, open_input, spacing_of, spatial_positions
from volumetric.ops.output import check_writable

if TYPE_CHECKING:
    from distributed import Client

log = logging.getLogger("volumetric")

GROUP_TARGET_BYTES = 16 * 2**20
BATCH_GROUPS = 256
DEFAULT_CUBE = 64
CONNECTIVITY_RANK = {6: 1, 18: 2, 26: 3}


@dataclass(frozen=True)
class CountCubes:
    """Block task: foreground counts of the listed cubes inside one group box.

    ``fixed`` holds the index of every non-spatial axis of the source (the
    chosen time point and channel) and None for spatial axes. When every
    cube of the group is wanted the group is read at once, otherwise each run
    of wanted cubes along the last axis; other cubes are never read.
    """

    source: Source
    fixed: tuple[int | None, ...]
    shape: Coord
    cube_shape: Coord
    threshold: float
    cubes: frozenset[Coord] | None = None

    def _read(self, box: Box) -> np.ndarray:
        spatial = iter(zip(box.start, box.stop))
        bounds = [next(spatial) if f is None else (f, f + 1) for f in self.fixed]
        full = Box(tuple(a for a, _ in bounds), tuple(b for _, b in bounds))
        return self.source.read(full).reshape(box.shape)

    def _count(self, grid: BlockGrid, first: Coord, last: Coord) -> dict[Coord, int]:
        """Counts of the cubes from ``first`` to ``last`` (inclusive), read at once."""
        box = Box(grid.box(first).start, grid.box(last).stop)
        counts = counts_per_cube(self._read(box), self.cube_shape, self.threshold)
        return {
            tuple(f + i for f, i in zip(first, index)): int(n)
            for index, n in np.ndenumerate(counts)
        }

    def __call__(self, group: Box) -> dict[Coord, int]:
        grid = BlockGrid(self.shape, self.cube_shape)
        inside = list(grid.indices_touching(group))
        if self.cubes is None or all(c in self.cubes for c in inside):
            return self._count(grid, inside[0], inside[-1])
        # Runs of consecutive wanted cubes along the last axis are read at once.
        runs: list[list[Coord]] = []
        for c in (c for c in inside if c in self.cubes):
            if runs and runs[-1][-1][:-1] == c[:-1] and runs[-1][-1][-1] + 1 == c[-1]:
                runs[-1].append(c)
            else:
                runs.append([c])
        return {c: n for run in runs for c, n in self._count(grid, run[0], run[-1]).items()}


def _fixed_indices(source: Source, t: int | None, channel: int | None) -> tuple[int | None, ...]:
    fixed: list[int | None] = []
    for axis, size in zip(source.axes, source.shape):
        if axis in "tc":
            value = (t if axis == "t" else channel) or 0
            option = "--t" if axis == "t" else "--channel"
            if not 0 <= value < size:
                raise InputError(f"{option} {value} is outside RAW's {size} {axis} indices")
            fixed.append(value)
        else:
            fixed.append(None)
    for axis, value, option in (("t", t, "--t"), ("c", channel, "--channel")):
        if value is not None and axis not in source.axes:
            raise InputError(f"RAW {source.path} has no {axis} axis; drop {option}")
    return tuple(fixed)


def _cube_shape(source: Source, shape: Coord, cube: Sequence[int] | None) -> Coord:
    spatial = spatial_positions(source.axes)
    chunks = tuple(source.chunks[i] for i in spatial) if source.chunks else None
    if cube is None:
        return tuple(min(c, s) for c, s in zip(chunks or (DEFAULT_CUBE,) * len(shape), shape))
    cube = tuple(int(c) for c in cube)
    if len(cube) != len(shape):
        raise InputError(f"--cube has {len(cube)} values; RAW has {len(shape)} spatial axes")
    if any(c <= 0 for c in cube):
        raise InputError(f"--cube must be positive, got {cube}")
    if chunks and any(c % k and c < s for c, k, s in zip(cube, chunks, shape)):
        raise InputError(
            f"--cube {','.join(map(str, cube))} is not a multiple of RAW's chunk shape "
            f"{','.join(map(str, chunks))}; choose a multiple so each chunk is read once"
        )
    return tuple(min(c, s) for c, s in zip(cube, shape))


def _seed_points(
    source: Source, shape: Coord, seeds: Iterable[Sequence[int]], seeds_swc: str | None
) -> list[Coord]:
    points = []
    for seed in seeds:
        seed = tuple(int(v) for v in seed)
        if len(seed) != len(shape) or any(not 0 <= v < s for v, s in zip(seed, shape)):
            raise InputError(f"seed {','.join(map(str, seed))} lies outside RAW's volume {shape}")
        points.append(seed)
    if seeds_swc is not None:
        skeleton = read_swc(seeds_swc)
        if len(shape) != 3:
            raise InputError(f"--seeds-swc needs a 3D volume; RAW has spatial shape {shape}")
        voxels = np.rint(skeleton.zyx / np.asarray(spacing_of(source, what="RAW"))).astype(int)
        outside = ~np.all((voxels >= 0) & (voxels < np.asarray(shape)), axis=1)
        if outside.any():
            k = int(np.flatnonzero(outside)[0])
            raise InputError(
                f"{seeds_swc}: node {skeleton.ids[k]} (voxel {tuple(voxels[k].tolist())}) and "
                f"{int(outside.sum()) - 1} more lie outside RAW's volume {shape}"
            )
        points.extend(tuple(v) for v in voxels.tolist())
    return points


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


def _search(
    seed_cubes: Sequence[Coord],
    grid: BlockGrid,
    rank: int,
    min_voxels: int,
    count: Callable[[list[Coord], int], dict[Coord, int]],
) -> tuple[list[Coord], set[Coord], int]:
    """Level-by-level BFS; returns the kept cubes, the cubes read, and the number of levels."""
    frontier = sorted(set(seed_cubes))
    seen = set(frontier)
    kept: list[Coord] = []
    level = 0
    while frontier:
        counts = count(frontier, level)
        occupied = [c for c in frontier if counts[c] >= min_voxels]
        kept.extend(occupied)
        following = {n for c in occupied for n in grid.neighbours(c, rank)} - seen
        seen |= following
        frontier = sorted(following)
        level += 1
    return sorted(kept), seen, level


def discover(
    src: str,
    out: str,
    *,
    seeds: Iterable[Sequence[int]] = (),
    seeds_swc: str | None = None,
    scan_all: bool = False,
    cube: Sequence[int] | None = None,
    threshold: float = 0.0,
    min_voxels: int = 100,
    connectivity: int = 26,
    t: int | None = None,
    channel: int | None = None,
    store_in: str | None = None,
    overwrite: bool = False,
    group_bytes: int | None = None,
    client: Client | None = None,
    cluster: str | None = None,
    workers: int | None = None,
    progress: bool = True,
) -> CubeList:
    """Find the occupied cubes of ``src`` connected to the seeds and write them to ``out``.

    Parameters
    ----------
    src : str
        The image (OME-Zarr, Zarr, HDF5 or .npy).
    out : str
        The JSON cube list to write (see :mod:`volumetric.io.cubes`).
    seeds : iterable of (z, y, x)
        Seed voxels.
    seeds_swc : str, optional
        An SWC file whose every node is a seed (physical coordinates, divided
        by the voxel size).
    scan_all : bool
        Count every cube (the baseline); without seeds, keep every occupied cube.
    cube : (z, y, x), optional
        Cube shape (default: the chunk shape); a multiple of the chunk shape.
    threshold : float
        A voxel is foreground when its value is above this (0: nonzero).
    min_voxels : int
        Foreground voxels that make a cube occupied.
    connectivity : {6, 18, 26}
        Cube adjacency.
    t, channel : int, optional
        Time point and channel of a 4D/5D image (default 0).
    store_in : str, optional
        Also store the list in the attributes of this OME-Zarr image (same spatial shape).
    overwrite : bool
        Replace an existing ``out``.
    group_bytes : int, optional
        Target size of the box of cubes one task reads (default 16 MiB).
    client, cluster, workers, progress
        Where and how to run (see :func:`volumetric.ops.convert.convert`).

    Returns
    -------
    CubeList
    """
    if connectivity not in CONNECTIVITY_RANK:
        raise InputError(f"--connectivity must be 6, 18 or 26, got {connectivity}")
    if min_voxels < 1:
        raise InputError(f"--min-voxels must be at least 1, got {min_voxels}")
    out_path = check_writable(out)
    if out_path.exists() and not overwrite:
        raise DestinationError(f"{out} already exists; pass --overwrite to replace it")
    source = open_input(src, what="RAW")
    fixed = _fixed_indices(source, t, channel)
    shape = tuple(s for s, f in zip(source.shape, fixed) if f is None)
    cube_shape = _cube_shape(source, shape, cube)
    points = _seed_points(source, shape, seeds, seeds_swc)
    if not points and not scan_all:
        raise InputError("no seeds: give --seed z,y,x, --seeds-swc FILE or --all")
    if store_in is not None:
        stored = open_image(store_in)
        stored_shape = tuple(s for a, s in zip(stored.meta.axes, stored.shape) if a in "zyx")
        if stored_shape != shape:
            raise InputError(f"--store-in {store_in} has spatial shape {stored_shape}, "
                             f"RAW has {shape}")
    grid = BlockGrid(shape, cube_shape)
    groups = BlockGrid(shape, grow_block(shape, cube_shape, range(len(shape)),
                                         np.dtype(source.dtype).itemsize,
                                         group_bytes or GROUP_TARGET_BYTES))
    store = CountStore(out_path, source, fixed, cube_shape, threshold)
    t0 = time.monotonic()

    def count(cubes: list[Coord], cl: Client, label: str) -> dict[Coord, int]:
        todo = frozenset(c for c in cubes if c not in store.counts)
        boxes = sorted({groups.index_of(grid.box(c).start) for c in todo})
        task = CountCubes(source, fixed, shape, cube_shape, threshold,
                          None if len(todo) == grid.num_blocks else todo)
        for i in range(0, len(boxes), BATCH_GROUPS):
            batch = [groups.box(g) for g in boxes[i:i + BATCH_GROUPS]]
            for result in run_blocks(task, batch, client=cl, label=label,
                                     progress=progress).values():
                store.counts.update(result)
            store.save()
        return {c: store.counts[c] for c in cubes}

    rank = min(CONNECTIVITY_RANK[connectivity], len(shape))
    seed_cubes = sorted({grid.index_of(p) for p in points})
    with session(client, cluster, workers, quiet=not progress) as cl:
        if scan_all:
            count(list(grid.indices()), cl, "discover all cubes")
        kept, read, levels = _search(
            seed_cubes, grid, rank, min_voxels,
            lambda cubes, level: count(cubes, cl, f"discover level {level}"),
        )
    if scan_all:
        read = set(grid.indices())
        if not points:
            kept = sorted(c for c, n in store.counts.items() if n >= min_voxels)
    empty_seeds = [c for c in seed_cubes if store.counts[c] < min_voxels]
    if empty_seeds:
        log.warning("%d of %d seed cubes hold fewer than %d foreground voxels and were not kept",
                    len(empty_seeds), len(seed_cubes), min_voxels)
    result = CubeList(shape, cube_shape, tuple(kept), {
        "source": os.path.abspath(src),
        "t": fixed[source.axes.index("t")] if "t" in source.axes else None,
        "channel": fixed[source.axes.index("c")] if "c" in source.axes else None,
        "mode": "all" if scan_all else "search",
        "threshold": threshold,
        "min_voxels": min_voxels,
        "connectivity": connectivity,
        "seeds": [list(p) for p in points],
        "seed_cubes": [list(c) for c in seed_cubes],
        "counts": [store.counts[c] for c in kept],
        "cubes_read": len(read),
        "cubes_total": grid.num_blocks,
        "levels": levels,
        "seconds": round(time.monotonic() - t0, 3),
    })
    write_cubes(out_path, result)
    if store_in is not None:
        store_cubes(store_in, result)
    store.path.unlink(missing_ok=True)
    return result
