"""OME-Zarr images (create, open, finalize), input sources, SWC skeletons and safe outputs."""

from volumetric.io.destination import replacing, require_suffix
from volumetric.io.ome import (
    ImageMeta,
    LevelSpec,
    OmeImage,
    create_image,
    finalize_image,
    open_image,
)
from volumetric.io.sources import Source, open_source
from volumetric.io.sources.hdf5 import HDF5_SUFFIXES
from volumetric.io.swc import Skeleton, write_swc

__all__ = [
    "HDF5_SUFFIXES",
    "ImageMeta",
    "LevelSpec",
    "OmeImage",
    "Skeleton",
    "Source",
    "create_image",
    "finalize_image",
    "open_image",
    "open_source",
    "replacing",
    "require_suffix",
    "write_swc",
]
