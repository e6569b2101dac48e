"""Pyramid levels of an operation's output image, computed as block jobs after level 0.

Operations plan their levels with :func:`plan_pyramid`, create them with
:func:`~volumetric.io.ome.create_image`, record :func:`pyramid_layout` in
their layout and run :func:`pyramid_jobs` inside their ``block_operation``
after the jobs that write level 0, so the levels are journaled and resume
like every other block. Level ``k`` is computed from the written level
``k - 1``: ``mean`` for intensities and continuous maps, ``nearest`` for
binary masks and labels (a voxel keeps a value that exists in the data).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from volumetric.engine import Operation
from volumetric.errors import InputError
from volumetric.geometry import BlockGrid, Box, block_shape_for
from volumetric.io.ome import ImageMeta, LevelSpec
from volumetric.io.pyramid import plan_levels
from volumetric.io.writes import write_box
from volumetric.kernels.downsample import downsample

log = logging.getLogger("volumetric")

BLOCK_TARGET_BYTES = 16 * 2**20
METHODS = ("mean", "nearest")


@dataclass(frozen=True)
class DownsampleLevel:
    """Block task: compute one box of a pyramid level from the level below."""

    src: str
    dst: str
    step: tuple[int, ...]
    method: str

    def __call__(self, box: Box) -> int:
        import zarr

        src = zarr.open_array(self.src, mode="r")
        read = Box(
            tuple(a * f for a, f in zip(box.start, self.step)),
            tuple(b * f for b, f in zip(box.stop, self.step)),
        ).clip(src.shape)
        out = downsample(src[read.slices], self.step, method=self.method)
        write_box(self.dst, box.slices, out)
        return int(out.nbytes)


class PyramidJob(NamedTuple):
    """One level's block job: its journal name, its task and its grid of write boxes."""

    name: str
    task: DownsampleLevel
    grid: BlockGrid


def check_levels(levels: int) -> None:
    """Refuse fewer than one pyramid level.

    Raises
    ------
    InputError
        ``levels`` is below 1.
    """
    if levels < 1:
        raise InputError(f"--levels must be at least 1, got {levels}")


def plan_pyramid(shape: Sequence[int], meta: ImageMeta, levels: int) -> list[LevelSpec]:
    """The level specs of an image with ``levels`` levels (see :func:`plan_levels`).

    Fewer levels are returned, with a warning, once no axis can shrink.

    Raises
    ------
    InputError
        ``levels`` is below 1.
    """
    check_levels(levels)
    specs = plan_levels(shape, meta, levels)
    if len(specs) < levels:
        log.warning("writing %d pyramid levels, not %d: level %d, of shape %s, cannot shrink "
                    "further", len(specs), levels, len(specs) - 1, specs[-1].shape)
    return specs


def write_grid(shape: Sequence[int], unit: Sequence[int], itemsize: int,
               block_bytes: int) -> BlockGrid:
    """Blocks of whole ``unit``s (chunks or shards, clipped to ``shape``) of about ``block_bytes``."""
    unit = tuple(min(u, s) for u, s in zip(unit, shape))
    return BlockGrid(tuple(shape), block_shape_for(shape, unit, itemsize, block_bytes))


def pyramid_jobs(dst: str, specs: Sequence[LevelSpec], chunks: Sequence[int], itemsize: int,
                 block_bytes: int | None, method: str,
                 shards: Sequence[int] | None = None) -> list[PyramidJob]:
    """The block jobs computing levels 1, 2, ... of the image ``dst``, in order.

    Parameters
    ----------
    dst : str
        The image; level ``spec.path`` is the array ``dst/spec.path``.
    specs : sequence of LevelSpec
        Every level, full resolution first (see :func:`plan_pyramid`).
    chunks : sequence of int
        The levels' chunk shape (clipped to each level, as
        :func:`~volumetric.io.ome.create_image` clips it).
    itemsize : int
        Bytes per voxel.
    block_bytes : int, optional
        Target size of what one task reads from the level below (at least
        one chunk or shard of its output); default 16 MiB.
    method : {"mean", "nearest"}
        Reduction (see :func:`~volumetric.kernels.downsample.downsample`).
    shards : sequence of int, optional
        The levels' shard shape; each shard is then written by one task.

    Returns
    -------
    list of PyramidJob
        Empty for a single level.
    """
    budget = block_bytes or BLOCK_TARGET_BYTES
    unit = tuple(shards) if shards else tuple(chunks)
    jobs = []
    for prev, spec in zip(specs, specs[1:]):
        step = tuple(a // b for a, b in zip(spec.factors, prev.factors))
        task = DownsampleLevel(f"{dst}/{prev.path}", f"{dst}/{spec.path}", step, method)
        # a task reads its box times its step from the level below: keep that read in budget
        grid = write_grid(spec.shape, unit, itemsize, budget // math.prod(step))
        jobs.append(PyramidJob(f"level-{spec.path}", task, grid))
    return jobs


def pyramid_layout(specs: Sequence[LevelSpec], jobs: Sequence[PyramidJob]) -> dict[str, Any]:
    """Layout entries for the levels beyond the first; none for a single level.

    A single-level output keeps the layout it had before pyramids existed, so
    runs interrupted then still resume.
    """
    if not jobs:
        return {}
    return {"pyramid": {
        "levels": [[lv.path, list(lv.shape), list(lv.factors)] for lv in specs],
        "method": jobs[0].task.method,
        "blocks": [list(job.grid.block) for job in jobs],
    }}


def run_pyramid(op: Operation, jobs: Sequence[PyramidJob], what: str) -> None:
    """Run ``jobs`` in order on the running operation ``op`` (a level needs the one below)."""
    for job in jobs:
        op.run(job.task, list(job.grid.boxes()), job=job.name,
               label=f"{what} level {job.name.removeprefix('level-')}")
