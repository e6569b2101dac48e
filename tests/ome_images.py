"""Write small numpy arrays as complete OME-Zarr images for tests."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import zarr

from volumetric.io.ome import ImageMeta, LevelSpec, create_image, finalize_image


def write_image(
    path: str | Path,
    data: np.ndarray,
    *,
    axes: str | None = None,
    voxel_size: Sequence[float] | None = None,
    chunks: Sequence[int] | None = None,
) -> str:
    """Store ``data`` as a one-level OME-Zarr image at ``path`` and return the path."""
    axes = axes or "zyx"[-data.ndim:]
    spatial = sum(a in "zyx" for a in axes)
    meta = ImageMeta(axes=axes, voxel_size=tuple(voxel_size or (1.0,) * spatial), unit="micrometer")
    create_image(path, meta, [LevelSpec("0", data.shape, (1,) * data.ndim)], dtype=data.dtype,
                 chunks=tuple(chunks or data.shape))
    zarr.open_array(str(Path(path) / "0"), mode="r+")[...] = data
    finalize_image(path)
    return str(path)
