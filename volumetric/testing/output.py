"""Writing synthetic files so that an interrupted run leaves nothing that looks complete."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from volumetric.errors import DestinationError, InputError
from volumetric.ops.output import check_writable

TIFF_SUFFIXES = (".tif", ".tiff")


@contextmanager
def replacing(paths: Sequence[str | Path], *, overwrite: bool = False) -> Iterator[list[Path]]:
    """Yield temporary paths next to ``paths``; move them into place together on success.

    Raises
    ------
    DestinationError
        An output exists (and ``overwrite`` is false) or is a folder, or its
        folder cannot be written.
    """
    targets = [check_writable(p) for p in paths]
    for target in targets:
        if target.is_dir():
            raise DestinationError(f"{target} is a folder; refusing to replace it")
        if target.exists() and not overwrite:
            raise DestinationError(f"{target} already exists; pass --overwrite to replace it")
    temps = [t.with_name(f".{t.name}.partial") for t in targets]
    try:
        yield temps
        for temp, target in zip(temps, targets):
            os.replace(temp, target)
    finally:
        for temp in temps:
            temp.unlink(missing_ok=True)


def require_suffix(path: str | Path, suffixes: Sequence[str], what: str) -> Path:
    """``path`` as a Path if its suffix is one of ``suffixes``, else an :class:`InputError`."""
    path = Path(path)
    if path.suffix.lower() not in suffixes:
        raise InputError(f"{path}: the {what} file name must end with {', '.join(suffixes)}")
    return path


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

    from volumetric.engine.progress import Progress

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
