"""OME-Zarr images (create, open, finalize) and input sources."""

from volumetric.io.ome import ImageMeta, LevelSpec, OmeImage, create_image, finalize_image, open_image
from volumetric.io.sources import Source, open_source

__all__ = [
    "ImageMeta",
    "LevelSpec",
    "OmeImage",
    "Source",
    "create_image",
    "finalize_image",
    "open_image",
    "open_source",
]
