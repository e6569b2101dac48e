"""Sparse cube discovery: breadth-first search over occupied cubes from seed points.

The volume (one time point and channel) is cut into cubes. A cube is
*occupied* when at least ``min_voxels`` of its voxels are above
``threshold``. The result is every occupied cube connected to a seed's cube
through occupied cubes (6-, 18- or 26-connectivity between cubes; in 2D,
6 means 4-connectivity and 18 or 26 mean 8).

The search (:mod:`volumetric.ops.cube_search`) reads each cube at most
once: the seed cubes and the neighbours of occupied cubes, never the empty
bulk. A task explores one region of cubes (``region``; by default about
256 MiB of voxels, 8 x 8 x 8 cubes of 64^3 uint16, and at most half the
cubes along each axis) and hands the
neighbours it finds in other regions to further tasks, which start as soon
as it ends; the result does not depend on the region shape or on the
number of workers. ``scan_all`` counts every cube
instead (the baseline): with seeds it returns the same cubes as the search,
without seeds every occupied cube.

Resume: counts are saved to ``OUT.json.partial`` every few seconds and
after every batch of full-scan tasks; rerunning the same command reuses
them (for any seeds, connectivity or ``min_voxels``, since counts depend
only on the image, the time point and channel, the cube shape and the
threshold).
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Iterable, Sequence

import numpy as np

from volumetric.engine import RunOptions, block_operation
from volumetric.errors import InputError
from volumetric.geometry import BlockGrid, Coord, as_coord, block_shape_for
from volumetric.io.cubes import CubeList, store_cubes, write_cubes
from volumetric.io.destination import claim_file
from volumetric.io.ome import open_image
from volumetric.io.sources import Source
from volumetric.io.swc import read_swc
from volumetric.ops.common import open_input, small_job, spacing_of, spatial_positions
from volumetric.ops.cube_search import (
    CountStore,
    CubeReader,
    ExpandRegion,
    level_search,
    region_search,
)
from volumetric.ops.paths import absolute

log = logging.getLogger("volumetric")

GROUP_TARGET_BYTES = 16 * 2**20
BATCH_GROUPS = 256
REGION_BYTES = 256 * 2**20
DEFAULT_CUBE = 64
CONNECTIVITY_RANK = {6: 1, 18: 2, 26: 3}


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
        multiple = [-(-c // k) * k for c, k in zip(cube, chunks)]
        raise InputError(
            f"--cube {','.join(map(str, cube))} is not a multiple of RAW's chunk shape "
            f"{','.join(map(str, chunks))}; choose a multiple (e.g. --cube "
            f"{','.join(map(str, multiple))}) or convert RAW with --chunks "
            f"{','.join(map(str, cube))}, so each chunk is read once"
        )
    return tuple(min(c, s) for c, s in zip(cube, shape))


def _region_shape(region: int | Sequence[int] | None, grid: BlockGrid, itemsize: int) -> Coord:
    if region is None:
        cubes = grid.block
        side = round((REGION_BYTES / (math.prod(cubes) * itemsize)) ** (1 / len(cubes)))
        # At least two regions along each axis that has two cubes, so small volumes run in parallel.
        return tuple(max(1, min(side, -(-n // 2))) for n in grid.grid_shape)
    shape = as_coord(region, len(grid.block))
    if any(r <= 0 for r in shape):
        raise InputError(f"region must be positive cube counts, got {shape}")
    return shape


def _seed_points(
    source: Source, shape: Coord, seeds: Iterable[Sequence[int]], seeds_swc: str | None
) -> list[Coord]:
    points = []
    for seed in seeds:
        seed = tuple(int(v) for v in seed)
        if len(seed) != len(shape):
            axes = ",".join("zyx"[-len(shape):])
            raise InputError(f"seed {','.join(map(str, seed))} has {len(seed)} coordinates; "
                             f"RAW's volume {shape} needs {len(shape)} ({axes})")
        if any(not 0 <= v < s for v, s in zip(seed, shape)):
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
    region: int | Sequence[int] | None = None,
    run: RunOptions = RunOptions(),
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
        A voxel is foreground when its value is above this (0: nonzero); finite.
    min_voxels : int
        Foreground voxels that make a cube occupied.
    connectivity : {6, 18, 26}
        Cube adjacency.
    t, channel : int, optional
        Time point and channel of a 4D/5D image (default 0).
    store_in : str, optional
        Also store the list in the attributes of this OME-Zarr image (same spatial shape).
    region : int or (z, y, x), optional
        Shape in cubes of the region one search task explores (default: as
        many cubes per axis as make about 256 MiB of voxels, and at most
        half the cubes along each axis, so that a small volume still has
        several regions to search in parallel).
    run : RunOptions
        Where and how to run; ``overwrite`` replaces an existing ``out``,
        ``block_bytes`` is the size of the box of cubes one task of the full
        scan reads (default 16 MiB).

    Returns
    -------
    CubeList
    """
    if connectivity not in CONNECTIVITY_RANK:
        raise InputError(f"--connectivity must be 6, 18 or 26, got {connectivity}")
    if min_voxels < 1:
        raise InputError(f"--min-voxels must be at least 1, got {min_voxels}")
    if not math.isfinite(threshold):
        raise InputError(f"--threshold must be a finite value, got {threshold}")
    out_path = claim_file(out, inputs=(src, seeds_swc, store_in), overwrite=run.overwrite,
                          what="OUT")
    source = open_input(absolute(src), what="RAW")
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
    reader = CubeReader(source, fixed, shape, cube_shape, threshold)
    grid = reader.grid
    regions = _region_shape(region, grid, np.dtype(source.dtype).itemsize)
    store = CountStore(out_path, source, fixed, cube_shape, threshold)
    rank = min(CONNECTIVITY_RANK[connectivity], len(shape))
    seed_cubes = sorted({grid.index_of(p) for p in points})
    t0 = time.monotonic()
    tasks = 0
    with block_operation(None, run, small=small_job(source)) as op:
        if scan_all:
            itemsize = np.dtype(source.dtype).itemsize
            groups = BlockGrid(shape, block_shape_for(
                shape, cube_shape, itemsize, run.block_bytes or GROUP_TARGET_BYTES, cubic=True))
            todo = sorted({groups.index_of(grid.box(c).start) for c in grid.indices()
                           if c not in store.counts})
            for i in range(0, len(todo), BATCH_GROUPS):
                batch = [groups.box(g) for g in todo[i:i + BATCH_GROUPS]]
                for counts in op.run(reader, batch, job="discover all cubes",
                                     journaled=False).values():
                    store.counts.update(counts)
                tasks += len(batch)
                store.save()
        elif seed_cubes:
            tasks = region_search(seed_cubes, ExpandRegion(reader, rank, min_voxels), store,
                                  region_shape=regions, client=op.client, progress=run.progress)
    kept, read, levels = level_search(seed_cubes, grid, rank, min_voxels,
                                      lambda cubes: {c: store.counts[c] for c in cubes})
    if scan_all:
        read = set(grid.indices())
        if not points:
            kept = sorted(c for c, n in store.counts.items() if n >= min_voxels)
    if threshold == 0 and len(read) > 1 and all(store.counts[c] >= min_voxels for c in read):
        log.warning("every cube read (%d) holds at least --min-voxels %d voxels above 0: is RAW "
                    "a mask? For raw intensities pass --threshold", len(read), min_voxels)
    empty_seeds = [c for c in seed_cubes if store.counts[c] < min_voxels]
    if empty_seeds:
        log.warning("%d of %d seed cubes hold fewer than %d foreground voxels and were not kept",
                    len(empty_seeds), len(seed_cubes), min_voxels)
    result = CubeList(shape, cube_shape, tuple(kept), {
        "source": os.path.basename(src),
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
        "tasks": tasks,
        "seconds": round(time.monotonic() - t0, 3),
    })
    write_cubes(out_path, result)
    if store_in is not None:
        store_cubes(store_in, result)
    store.path.unlink(missing_ok=True)
    return result
