"""Render SWC traces into a binary mask on an image's voxel grid, block by block.

SWC coordinates and radii are physical, in the unit and frame of the
reference image: voxel ``i`` has its centre at ``origin + i * voxel_size``,
the origin being the image's NGFF translation (0 for most images). Each
parent-child segment is a capsule whose radius varies linearly between the
node radii; roots without children are spheres (see
:mod:`volumetric.kernels.swc_render`). Radii below half the smallest voxel
size are raised to it, so that thin traces stay visible as lines of voxels.

The output is a uint8 OME-Zarr image (0/1) with the reference's spatial
shape, chunks, voxel size and unit. Only blocks touched by a segment's
bounding box are computed; the rest stay the fill value 0 and are never
written. With ``levels`` above 1 the mask gets pyramid levels by nearest
downsampling (the first voxel of each cell), so every level stays 0/1 (see
:mod:`volumetric.ops.pyramid`); traces thinner than a level's voxel may
break up there.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from volumetric.engine import RunOptions, block_operation
from volumetric.errors import InputError
from volumetric.geometry import BlockGrid, Box, block_shape_for
from volumetric.io.ome import OmeImage, create_image, open_image, with_axes
from volumetric.io.swc import Skeleton, read_swc
from volumetric.io.writes import write_box
from volumetric.kernels.swc_render import render_segments, segment_bounds
from volumetric.ops.common import (
    chunks_of,
    open_input,
    small_job,
    spacing_of,
    spatial_positions,
)
from volumetric.ops.output import ImageOutput
from volumetric.ops.paths import absolute
from volumetric.ops.pyramid import (
    plan_pyramid,
    pyramid_jobs,
    pyramid_layout,
    run_pyramid,
)

log = logging.getLogger("volumetric")

BLOCK_TARGET_BYTES = 16 * 2**20


def segment_table(skeleton: Skeleton, spacing: tuple[float, ...],
                  origin: tuple[float, ...] = (0.0, 0.0, 0.0)) -> np.ndarray:
    """The segments of ``skeleton`` as rows ``z0 y0 x0 z1 y1 x1 r0 r1``, physical from ``origin``.

    Every parent-child edge is a segment; a node that is in no edge becomes a
    zero-length segment (a sphere). Radii are at least half the smallest voxel size.
    """
    zyx = skeleton.zyx - np.asarray(origin)
    radius = np.maximum(skeleton.radius, min(spacing) / 2)
    edges = skeleton.edges()
    alone = np.setdiff1d(np.arange(len(skeleton)), edges.ravel())
    first = np.concatenate([edges[:, 0], alone])
    second = np.concatenate([edges[:, 1], alone])
    return np.column_stack([zyx[first], zyx[second], radius[first], radius[second]])


@dataclass(frozen=True)
class RenderBlock:
    """Block task: rasterise the segments whose bounding boxes touch one block."""

    segments: str
    array: str
    spacing: tuple[float, ...]

    def __call__(self, box: Box) -> int:
        table = np.load(self.segments, mmap_mode="r")
        lo, hi = segment_bounds(table, self.spacing)
        near = np.all((lo < np.asarray(box.stop)) & (hi > np.asarray(box.start)), axis=1)
        mask = render_segments(box.start, box.shape, np.asarray(table[near]), self.spacing)
        write_box(self.array, box.slices, mask.astype(np.uint8))
        return int(mask.sum())


@dataclass
class RenderReport:
    """What :func:`render` did."""

    image: OmeImage
    blocks: int
    voxels: int
    seconds: float
    resumed: bool


def render(
    swc: str,
    like: str,
    dst: str,
    *,
    levels: int = 1,
    run: RunOptions = RunOptions(),
) -> RenderReport:
    """Render the SWC file ``swc`` into a binary mask on the voxel grid of ``like``.

    Parameters
    ----------
    swc : str
        Traced neurons (``id type x y z radius parent``), physical units.
    like : str
        The reference image (its spatial shape, chunks, voxel size and unit).
    dst : str
        Output OME-Zarr image, uint8 0/1, axes ``zyx``.
    levels : int
        Pyramid levels including full resolution; each level is the nearest
        downsampling of the one below.
    run : RunOptions
        Where and how to run; ``block_bytes`` defaults to 16 MiB of uint8
        (for a pyramid task, of what it reads).

    Returns
    -------
    RenderReport
    """
    skeleton = read_swc(swc)
    like, dst = absolute(like), absolute(dst)
    source = open_input(like, what="RAW")
    spatial = spatial_positions(source.axes)
    if len(spatial) != 3:
        raise InputError(f"RAW {like} has axes {source.axes!r}; rendering SWC needs z, y and x")
    spacing = spacing_of(source, what="RAW")
    shape = tuple(source.shape[i] for i in spatial)
    chunks = tuple(chunks_of(source, np.uint8)[i] for i in spatial)
    meta = with_axes(source.meta(spacing), "zyx", name=Path(dst).name)
    origin = meta.origin or (0.0, 0.0, 0.0)
    table = segment_table(skeleton, spacing, origin)
    voxels = np.rint((skeleton.zyx - np.asarray(origin)) / np.asarray(spacing))
    outside = int(np.sum(np.any((voxels < 0) | (voxels >= np.asarray(shape)), axis=1)))
    if outside:
        log.warning("%d of %d SWC nodes lie outside RAW's volume %s (voxel size %s); "
                    "only the parts inside are rendered", outside, len(skeleton), shape, spacing)
    block = block_shape_for(shape, chunks, 1, run.block_bytes or BLOCK_TARGET_BYTES, cubic=True)
    grid = BlockGrid(shape, block)
    specs = plan_pyramid(shape, meta, levels)
    pyramid = pyramid_jobs(dst, specs, chunks, 1, run.block_bytes, "nearest")
    lo, hi = segment_bounds(table, spacing)
    touched = sorted({i for a, b in zip(lo, hi)
                      for i in grid.indices_touching(Box(tuple(a), tuple(b)))})
    st = os.stat(swc)
    layout = {
        "operation": "render",
        "swc": {"path": os.path.abspath(swc), "size": st.st_size, "mtime_ns": st.st_mtime_ns},
        "like": source.identity(),
        "shape": list(shape),
        "chunks": list(chunks),
        "block": list(grid.block),
        "spacing": list(spacing),
        "origin": list(origin),
        **pyramid_layout(specs, pyramid),
    }

    def create() -> None:
        create_image(dst, meta, specs, dtype=np.uint8, chunks=chunks,
                     extra_attrs={"downsample": "nearest"})

    t0 = time.monotonic()
    with block_operation(ImageOutput(dst, layout, create, (like, swc)), run,
                         small=small_job(source)) as op:
        segments = op.journal.scratch("render") / "segments.npy"
        np.save(segments, table)
        results = op.run(RenderBlock(str(segments), str(Path(dst) / "0"), spacing),
                         [grid.box(i) for i in touched], job="render")
        run_pyramid(op, pyramid, "render")
    return RenderReport(open_image(dst), len(touched), sum(results.values()),
                        time.monotonic() - t0, op.resumed)
