"""Convert any supported input to an OME-Zarr image, block by block on the cluster.

Level 0 is copied from the source in chunk-aligned blocks (each task reads
its box from the source and writes whole chunks); every further pyramid
level is computed from the previous written level. Each stored chunk is
written by exactly one task, and a journal of finished blocks makes the run
resumable after a crash.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from volumetric.engine import check_cluster, run_blocks, session
from volumetric.errors import InputError, check_choice
from volumetric.geometry import BlockGrid, Box, block_shape_for, ceil_div
from volumetric.io.codecs import DEFAULT_COMPRESSOR, parse_compressor
from volumetric.io.ome import SPATIAL_AXES, LevelSpec, OmeImage, create_image, open_image
from volumetric.io.pyramid import plan_levels
from volumetric.io.sources import Source, open_source
from volumetric.kernels.downsample import downsample
from volumetric.ops.output import complete_output, open_output
from volumetric.ops.paths import absolute

if TYPE_CHECKING:
    from distributed import Client

log = logging.getLogger("volumetric")

BLOCK_TARGET_BYTES = 16 * 2**20
BLOCK_LIMIT_BYTES = 64 * 2**20  # blocks may grow this far to cover whole source reads
CHUNK_TARGET_BYTES = 2 * 2**20


def default_chunks(shape: Sequence[int], axes: str, dtype: Any) -> tuple[int, ...]:
    """Chunks of about 1-4 MB: one ``t`` and ``c`` each, near-cubic in space.

    Examples
    --------
    >>> default_chunks((2, 300, 1024, 1024), "czyx", "uint16")
    (1, 128, 128, 64)
    """
    itemsize = np.dtype(dtype).itemsize
    chunks = [s if a in SPATIAL_AXES else 1 for a, s in zip(axes, shape)]
    spatial = [i for i, a in enumerate(axes) if a in SPATIAL_AXES]
    while itemsize * int(np.prod(chunks)) > CHUNK_TARGET_BYTES:
        i = max(spatial, key=lambda j: chunks[j])
        chunks[i] = -(-chunks[i] // 2)
    return tuple(chunks)


def resolve_chunks(
    chunks: Sequence[int] | None, shape: Sequence[int], axes: str, dtype: Any, *, what: str
) -> tuple[int, ...]:
    """Full chunk shape from a user's spatial (``z,y,x``) or full-length value."""
    if chunks is None:
        return default_chunks(shape, axes, dtype)
    chunks = tuple(int(c) for c in chunks)
    spatial = [a for a in axes if a in SPATIAL_AXES]
    if len(chunks) == len(spatial):
        it = iter(chunks)
        chunks = tuple(next(it) if a in SPATIAL_AXES else 1 for a in axes)
    elif len(chunks) != len(axes):
        raise InputError(
            f"{what} has {len(chunks)} values; give one per spatial axis "
            f"({','.join(spatial)}) or one per axis ({','.join(axes)})"
        )
    if any(c < 1 for c in chunks):
        raise InputError(f"{what} must be positive, got {chunks}")
    return tuple(min(c, s) if s else c for c, s in zip(chunks, shape))


@dataclass(frozen=True)
class CopyFromSource:
    """Block task: copy one box of a source into a Zarr array."""

    source: Source
    array: str

    def __call__(self, box: Box) -> int:
        import zarr

        data = self.source.read(box)
        zarr.open_array(self.array, mode="r+")[box.slices] = data
        return int(data.nbytes)


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
        zarr.open_array(self.dst, mode="r+")[box.slices] = out
        return int(out.nbytes)


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
                itemsize: int, block_bytes: int, reads: Sequence[int] | None = None) -> BlockGrid:
    unit = tuple(shards) if shards else tuple(chunks)
    unit = tuple(min(u, s) for u, s in zip(unit, shape))
    if reads is not None:
        unit = _cover_reads(unit, reads, shape, itemsize)
    return BlockGrid(tuple(shape), block_shape_for(shape, unit, itemsize, block_bytes))


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
    overwrite: bool = False,
    block_bytes: int = BLOCK_TARGET_BYTES,
    client: Client | None = None,
    cluster: str | None = None,
    workers: int | None = None,
    progress: bool = True,
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
    overwrite : bool
        Replace an existing output.
    block_bytes : int
        Target size of what one block task reads (whole chunks or shards of
        its output; at least one).
    client : distributed.Client, optional
        Run on this client instead of connecting to ``cluster``.
    cluster : str, optional
        Scheduler address or ``"local"`` (see :func:`volumetric.engine.connect`).
    workers : int, optional
        Worker processes of an embedded LocalCluster.
    progress : bool
        Show progress lines.

    Returns
    -------
    ConvertReport
    """
    src, dst = absolute(src), absolute(dst)
    if levels < 1:
        raise InputError(f"--levels must be at least 1, got {levels}")
    check_choice(downsampling, ("mean", "nearest"), "downsampling")
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
    specs: list[LevelSpec] = plan_levels(shape, meta, levels)
    if len(specs) < levels:
        log.warning("writing %d pyramid levels, not %d: level %d, of shape %s, cannot shrink "
                    "further", len(specs), levels, len(specs) - 1, specs[-1].shape)
    itemsize = np.dtype(source.dtype).itemsize
    steps = [tuple(a // b for a, b in zip(spec.factors, prev.factors))
             for prev, spec in zip(specs, specs[1:])]
    # a pyramid task reads its box times its step from the level below: keep that read in budget
    grids = [_write_grid(shape, chunk_shape, shard_shape, itemsize, block_bytes, source.chunks)]
    grids += [_write_grid(spec.shape, chunk_shape, shard_shape, itemsize,
                          block_bytes // math.prod(step))
              for spec, step in zip(specs[1:], steps)]
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
        "blocks": [list(grid.block) for grid in grids],
    }

    def create() -> None:
        create_image(
            dst, meta, specs, dtype=source.dtype, chunks=chunk_shape, shards=shard_shape,
            ngff=ngff, compressor=compressor,
            extra_attrs={"source": {"path": layout["source"]["path"], "axes": source.native_axes}},
        )

    check_cluster(client, cluster)
    journal, resumed = open_output(dst, layout, create, overwrite=overwrite, inputs=(src,))
    if resumed:
        log.info("resuming the interrupted conversion of %s", dst)
    if voxel_size is None and source.voxel_size is None:
        log.warning("%s has no voxel size metadata; assuming 1 per axis (use --voxel-size)", src)
    total_blocks = 0
    bytes_read = 0
    with session(client, cluster, workers, quiet=not progress) as cl:
        t0 = time.monotonic()
        for k, (spec, grid) in enumerate(zip(specs, grids)):
            array = f"{dst}/{spec.path}"
            if k == 0:
                task: Any = CopyFromSource(source, array)
            else:
                task = DownsampleLevel(f"{dst}/{specs[k - 1].path}", array, steps[k - 1],
                                       downsampling)
            results = run_blocks(
                task, list(grid.boxes()), client=cl, journal=journal, job=f"level-{spec.path}",
                label=f"convert level {spec.path}", progress=progress,
            )
            total_blocks += grid.num_blocks
            if k == 0:
                bytes_read = sum(results.values())
        seconds = time.monotonic() - t0
    complete_output(dst, journal)
    return ConvertReport(open_image(dst), total_blocks, seconds, bytes_read, resumed)
