"""Writing synthetic files so that an interrupted run leaves nothing that looks complete."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

TIFF_SUFFIXES = (".tif", ".tiff")


def big_tiff(shape: Sequence[int], dtype: np.dtype | type) -> bool:
    """Whether an image of ``shape`` needs BigTIFF (classic TIFF offsets end at 4 GiB)."""
    return int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize > 2**32 - 2**25


def fill_tiffs(
    paths: Sequence[Path],
    layouts: Sequence[tuple[tuple[int, ...], Any, dict[str, Any]]],
    blocks: Iterable[tuple[int, Sequence[np.ndarray]]],
    *,
    total: int,
    label: str,
    progress: bool = True,
) -> None:
    """Create uncompressed TIFFs at full size with tifffile, then fill them block by block.

    Only one block is held in memory at a time, so the images may exceed it.

    Parameters
    ----------
    paths : sequence of Path
        One TIFF per layout.
    layouts : sequence of (shape, dtype, metadata)
        Each file's image; ``metadata`` goes to tifffile's JSON description
        (e.g. ``{"axes": "ZYX"}``).
    blocks : iterable of (start, arrays)
        One array per file, each a run of whole planes of the first axis
        starting at ``start``.
    total, label : int, str
        For the progress line.
    """
    import tifffile

    from volumetric.engine import Progress

    offsets = [
        tifffile.imwrite(path, shape=shape, dtype=dtype, photometric="minisblack",
                         metadata=metadata, bigtiff=big_tiff(shape, dtype), returnoffset=True)[0]
        for path, (shape, dtype, metadata) in zip(paths, layouts)
    ]
    plane_bytes = [int(np.prod(shape[1:])) * np.dtype(dtype).itemsize
                   for shape, dtype, _ in layouts]
    bar = Progress(total, label, enabled=progress)
    files = [open(path, "r+b") for path in paths]
    try:
        for start, arrays in blocks:
            for f, offset, size, data, (_, dtype, _) in zip(
                files, offsets, plane_bytes, arrays, layouts
            ):
                f.seek(offset + start * size)
                f.write(np.ascontiguousarray(data, dtype=dtype).tobytes())
            bar.update()
    finally:
        for f in files:
            f.close()
    bar.close()
