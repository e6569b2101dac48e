"""Convert any supported input to an OME-Zarr image, block by block on the cluster.

Level 0 is copied from the source in chunk-aligned blocks (each task reads
its box from the source and writes whole chunks); every further pyramid
level is computed from the previous written level. Each stored chunk is
written by exactly one task, and a journal of finished blocks makes the run
resumable after a crash.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from volumetric.engine import RunOptions, block_operation
from volumetric.errors import InputError, check_choice
from volumetric.geometry import BlockGrid, Box, ceil_div
from volumetric.io.codecs import DEFAULT_COMPRESSOR, parse_compressor
from volumetric.io.destination import check_apart
from volumetric.io.ome import OmeImage, create_image, open_image
from volumetric.io.sources import Source, open_source
from volumetric.io.writes import write_box
from volumetric.ops.common import resolve_chunks, small_job
from volumetric.ops.output import ImageOutput
from volumetric.ops.paths import absolute
from volumetric.ops.pyramid import (
    METHODS,
    check_levels,
    plan_pyramid,
    pyramid_jobs,
    run_pyramid,
    write_grid,
)

log = logging.getLogger("volumetric")

BLOCK_TARGET_BYTES = 16 * 2**20
BLOCK_LIMIT_BYTES = 64 * 2**20  # blocks may grow this far to cover whole source reads
# Outputs named like image files: convert writes an OME-Zarr folder, `vol export` writes files.
FILE_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg", ".mp4", ".gif", ".v3draw", ".h5",
                 ".hdf5")


@dataclass(frozen=True)
class CopyFromSource:
    """Block task: copy one box of a source into a Zarr array."""

    source: Source
    array: str

    def __call__(self, box: Box) -> int:
        data = self.source.read(box)
        write_box(self.array, box.slices, data)
        return int(data.nbytes)


@dataclass
class ConvertReport:
    """What :func:`convert` did."""

    image: OmeImage
    blocks: int
    seconds: float
    bytes_read: int
    resumed: bool


def _cover_reads(unit: Sequence[int], reads: Sequence[int], shape: Sequence[int],
                 itemsize: int) -> tuple[int, ...]:
    """Grow a write unit to whole source reads (a TIFF strip, a video frame), last axis first.

    Otherwise every task crossing a strip would decode all of it again. Growth
    stops at the first axis that would exceed ``BLOCK_LIMIT_BYTES``.
    """
    grown = list(unit)
    for axis in reversed(range(len(grown))):
        trial = grown.copy()
        trial[axis] = min(ceil_div(reads[axis], grown[axis]) * grown[axis], shape[axis])
        if itemsize * int(np.prod(trial)) > BLOCK_LIMIT_BYTES:
            break
        grown = trial
    return tuple(grown)


def _write_grid(shape: Sequence[int], chunks: Sequence[int], shards: Sequence[int] | None,
                itemsize: int, block_bytes: int, reads: Sequence[int] | None) -> BlockGrid:
    """Level 0's blocks: whole chunks or shards, grown to whole source reads."""
    unit = tuple(min(u, s) for u, s in zip(shards or chunks, shape))
    if reads is not None:
        unit = _cover_reads(unit, reads, shape, itemsize)
    return write_grid(shape, unit, itemsize, block_bytes)


def convert(
    src: str,
    dst: str,
    *,
    dataset: str | None = None,
    axes: str | None = None,
    chunks: Sequence[int] | None = None,
    shards: Sequence[int] | None = None,
    levels: int = 1,
    voxel_size: Sequence[float] | None = None,
    unit: str | None = None,
    ngff: str = "0.5",
    compressor: str = DEFAULT_COMPRESSOR,
    downsampling: str = "mean",
    run: RunOptions = RunOptions(),
) -> ConvertReport:
    """Convert ``src`` to the OME-Zarr image ``dst``.

    Parameters
    ----------
    src : str
        Input path (see :func:`volumetric.io.sources.open_source`).
    dst : str
        Output OME-Zarr group; the full-resolution array is ``dst/0``.
    dataset : str, optional
        Dataset (or group of frames) inside an HDF5 file.
    axes : str, optional
        The source's axis order, e.g. ``"cxyz"``.
    chunks : sequence of int, optional
        Chunk shape, spatial (``z,y,x``) or one value per output axis.
    shards : sequence of int, optional
        Shard shape (NGFF 0.5); each shard is written by one task.
    levels : int
        Number of pyramid levels including full resolution.
    voxel_size : sequence of float, optional
        Voxel size in ``z, y, x`` order, overriding the source's metadata.
    unit : str, optional
        Length unit of ``voxel_size`` (UDUNITS name or common abbreviation).
    ngff : {"0.5", "0.4"}
        NGFF version (Zarr v3 or v2).
    compressor : str
        ``blosc-zstd`` (default), ``blosc-lz4``, ``zstd``, ``gzip`` or ``none``,
        optionally with ``:level``.
    downsampling : {"mean", "nearest"}
        Pyramid reduction: mean for intensities, nearest for labels.
    run : RunOptions
        Where and how to run (see :class:`~volumetric.engine.RunOptions`);
        ``block_bytes`` is the target size of what one block task reads (whole
        chunks or shards of its output; at least one), 16 MiB by default.

    Returns
    -------
    ConvertReport
    """
    src, dst = absolute(src), absolute(dst)
    if Path(dst).suffix.lower() in FILE_SUFFIXES:
        check_apart(dst, [src])  # over or inside the input is the graver mistake
        raise InputError(f"{dst}: convert writes an OME-Zarr folder, not a {Path(dst).suffix} "
                         "file; name it .zarr, or convert then write the file with vol export")
    check_levels(levels)
    check_choice(downsampling, METHODS, "downsampling")
    parse_compressor(compressor)
    source = open_source(src, dataset=dataset, axes=axes)
    meta = source.meta(voxel_size, unit)
    shape = source.shape
    if any(s == 0 for s in shape):
        raise InputError(f"{src} is empty: shape {shape}")
    chunk_shape = resolve_chunks(chunks, shape, meta.axes, source.dtype, what="--chunks")
    shard_shape = None
    if shards is not None:
        shard_shape = resolve_chunks(shards, shape, meta.axes, source.dtype, what="--shards")
        if any(s % c for s, c in zip(shard_shape, chunk_shape)):
            raise InputError(f"--shards {shard_shape} must be a multiple of --chunks {chunk_shape}")
    specs = plan_pyramid(shape, meta, levels)
    itemsize = np.dtype(source.dtype).itemsize
    block_bytes = run.block_bytes or BLOCK_TARGET_BYTES
    grid = _write_grid(shape, chunk_shape, shard_shape, itemsize, block_bytes, source.chunks)
    jobs = pyramid_jobs(dst, specs, chunk_shape, itemsize, block_bytes, downsampling, shard_shape)
    layout = {
        "operation": "convert",
        "source": source.identity(),
        "meta": meta.to_json(),
        "levels": [[lv.path, list(lv.shape), list(lv.factors)] for lv in specs],
        "chunks": list(chunk_shape),
        "shards": list(shard_shape) if shard_shape else None,
        "dtype": str(np.dtype(source.dtype)),
        "ngff": ngff,
        "compressor": compressor,
        "downsampling": downsampling,
        "blocks": [list(grid.block)] + [list(job.grid.block) for job in jobs],
    }

    def create() -> None:
        create_image(
            dst, meta, specs, dtype=source.dtype, chunks=chunk_shape, shards=shard_shape,
            ngff=ngff, compressor=compressor,
            extra_attrs={"source": {"name": Path(src).name, "axes": source.native_axes},
                         "downsample": downsampling},
        )

    t0 = time.monotonic()
    with block_operation(ImageOutput(dst, layout, create, (src,)), run,
                         small=small_job(source)) as op:
        if voxel_size is None and source.voxel_size is None:
            log.warning("%s has no voxel size metadata; assuming 1 per axis (use --voxel-size)",
                        src)
        bytes_read = sum(op.run(CopyFromSource(source, f"{dst}/0"), list(grid.boxes()),
                                job="level-0", label="convert level 0").values())
        run_pyramid(op, jobs, "convert")
    total_blocks = grid.num_blocks + sum(job.grid.num_blocks for job in jobs)
    return ConvertReport(open_image(dst), total_blocks, time.monotonic() - t0, bytes_read,
                         op.resumed)
