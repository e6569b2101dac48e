"""What the operations share: inputs, chunk, block and patch shapes, normalised reads.

Operations import these helpers from here, never from each other.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from volumetric.errors import InputError
from volumetric.geometry import Box
from volumetric.io.intensity import intensity_stats
from volumetric.io.ome import SPATIAL_AXES, open_image
from volumetric.io.sources import Source, open_source, split_hdf5_path
from volumetric.kernels.normalize import normalize

log = logging.getLogger("volumetric")

CHUNK_TARGET_BYTES = 2 * 2**20
# Below this many bytes of input a job takes less time than starting worker processes
SMALL_JOB_BYTES = 32 * 2**20


def open_input(path: str, *, what: str) -> Source:
    """Open an image input (OME-Zarr, Zarr, HDF5, .npy) for a block-wise operation.

    Parameters
    ----------
    path : str
        The input.
    what : str
        Its role in the command line (``"MASK"``, ``"RAW"``...), for messages.
    """
    if not os.path.exists(path) and split_hdf5_path(path) is None:
        raise InputError(f"{what} {path}: no such file or folder")
    source = open_source(path)
    if any(s == 0 for s in source.shape):
        raise InputError(f"{what} {path} is empty: shape {source.shape}")
    return source


def small_job(*sources: Source) -> bool:
    """Whether a job reading ``sources`` is small enough to run on threads of this process.

    True when the sources hold at most ``SMALL_JOB_BYTES`` together and each
    may be read from several threads (Zarr and .npy inputs, not HDF5, TIFF or
    video); the embedded cluster then starts no worker processes (see
    :func:`volumetric.engine.block_operation`).
    """
    return (all(s.thread_safe for s in sources)
            and sum(s.nbytes for s in sources) <= SMALL_JOB_BYTES)


def spatial_positions(axes: str) -> list[int]:
    """Positions of the spatial axes (z, y, x) in ``axes``."""
    return [i for i, a in enumerate(axes) if a in SPATIAL_AXES]


def spacing_of(source: Source, *, what: str) -> tuple[float, ...]:
    """The voxel size of ``source`` (z, y, x), or 1 per axis with a warning when unknown."""
    n = len(spatial_positions(source.axes))
    if source.voxel_size is None:
        log.warning(
            "%s %s has no voxel size; assuming 1 per axis (isotropic, distances in voxels)",
            what, source.path,
        )
        return (1.0,) * n
    return tuple(float(v) for v in source.voxel_size)


def chunks_of(source: Source, dtype: Any) -> tuple[int, ...]:
    """Chunks for an output shaped like ``source``: its own (one ``t``/``c`` each) or ~2 MB."""
    if source.chunks is None:
        return default_chunks(source.shape, source.axes, dtype)
    return tuple(
        min(c, s) if a in SPATIAL_AXES else 1
        for a, c, s in zip(source.axes, source.chunks, source.shape)
    )


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


def default_patch(path: str) -> tuple[int, int, int]:
    """64^3 for volumes, 1x256x256 for 2D images (also one plane), clipped to the image."""
    image = open_image(path)
    shape = [s for a, s in zip(image.meta.axes, image.shape) if a in "zyx"]
    if len(shape) == 2 or shape[0] == 1:
        return (1, min(256, shape[-2]), min(256, shape[-1]))
    return tuple(min(64, s) for s in shape)  # type: ignore[return-value]


@dataclass(frozen=True)
class NormalizedInput:
    """Reads spatial boxes of the raw volume as normalised float32 ``(C, ...)``.

    Parameters
    ----------
    source : Source
        The raw volume (axes ``[c]zyx`` or ``[c]yx``).
    channels : tuple of int, optional
        Channels fed to the model, in order; None when the source has no ``c`` axis.
    method : str
        Normalisation (see :func:`volumetric.kernels.normalize.normalize`).
    stats : tuple of dict
        Volume-wide statistics, one per model input channel.
    t : int, optional
        The time point read from a source with a ``t`` axis.
    """

    source: Source
    channels: tuple[int, ...] | None
    method: str
    stats: tuple[Mapping[str, float], ...]
    t: int | None = None

    def read(self, box: Box) -> np.ndarray:
        lead = () if self.t is None else (self.t,)
        if self.channels is None:
            data = self.source.read(Box((*lead, *box.start), (*(t + 1 for t in lead), *box.stop)))
            data = data.reshape(1, *box.shape)
        else:
            lo, hi = min(self.channels), max(self.channels) + 1
            data = self.source.read(Box((*lead, lo, *box.start),
                                        (*(t + 1 for t in lead), hi, *box.stop)))
            data = data.reshape(hi - lo, *box.shape)[[c - lo for c in self.channels]]
        return np.stack([normalize(d, s, self.method) for d, s in zip(data, self.stats)])


@dataclass(frozen=True)
class _SourceArray:
    """A source seen as an array, for :func:`intensity_stats`."""

    source: Source

    @property
    def shape(self) -> tuple[int, ...]:
        return self.source.shape

    @property
    def chunks(self) -> tuple[int, ...]:
        return self.source.chunks or tuple(min(s, 64) for s in self.source.shape)

    def __getitem__(self, index: tuple[slice, ...]) -> np.ndarray:
        bounds = [s.indices(n)[:2] for s, n in zip(index, self.shape)]
        return self.source.read(Box(tuple(a for a, _ in bounds), tuple(b for _, b in bounds)))


def normalized_input(source: Source, channels: tuple[int, ...] | None, method: str,
                     percentiles: Sequence[float] = (1.0, 99.8)) -> NormalizedInput:
    """A :class:`NormalizedInput` with statistics measured on ``source`` (a sample of chunks)."""
    n = 1 if channels is None else len(channels)
    if method == "none":
        return NormalizedInput(source, channels, method, ({},) * n)
    caxis = source.axes.index("c") if channels is not None else None
    stats = intensity_stats(_SourceArray(source), channel_axis=caxis,
                            percentiles=(float(percentiles[0]), float(percentiles[1])))
    keys = ("low", "high", "mean", "std")
    if channels is None:
        return NormalizedInput(source, channels, method, ({k: stats[k] for k in keys},))
    per_channel = tuple({k: stats[k][c] for k in keys} for c in channels)
    return NormalizedInput(source, channels, method, per_channel)
