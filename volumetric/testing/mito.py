"""EM-like volumes with mitochondria-like organelles and their instance labels.

Organelles are non-overlapping randomly oriented ellipsoids (a dark
membrane rim, a darker matrix crossed by cristae-like stripes) in a light,
textured cytoplasm. The image is uint8 (``z, y, x``); the labels are uint16
instance ids (0 background, 1..n one per organelle, the voxels whose
centres lie inside the ellipsoid). Texture and noise are drawn per plane
tile, so any box is the same whatever the tiling.

:func:`write_mito` writes both as multipage TIFFs, a few pages at a time: ``OUT.tif``
and ``OUT_labels.tif`` (the label file takes the image's stem plus
``_labels``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from volumetric.geometry import BlockGrid, Box
from volumetric.io import replacing, require_suffix
from volumetric.testing import tiles
from volumetric.testing.output import TIFF_SUFFIXES, fill_tiffs
from volumetric.testing.params import positive

DEFAULT_FRACTION = 0.12  # of the volume inside organelles
SEMI_AXES = ((10.0, 24.0), (5.0, 9.0))  # ranges of the long and the two short semi-axes, voxels
RIM = 1.6  # membrane thickness, voxels
CYTOPLASM, MATRIX, MEMBRANE = 170.0, 115.0, 45.0
CRISTAE = 30.0  # brightness swing of the stripes
TEXTURE, NOISE = 14.0, 10.0
NOISE_TILE = (1, 128, 128)
TEXTURE_STREAM, NOISE_STREAM = 1, 2
SLAB = 8  # pages rendered at once when writing


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.standard_normal((3, 3)))
    return q * np.sign(np.diag(r))


@dataclass(frozen=True)
class Mito:
    """A synthetic EM volume, rendered box by box; build with :func:`mito`.

    Attributes
    ----------
    shape : tuple of int
        ``z, y, x``.
    centres : ndarray, shape (n, 3)
    rotations : ndarray, shape (n, 3, 3)
        Columns are the organelles' axes in ``z, y, x``.
    semi_axes : ndarray, shape (n, 3)
        Along the rotation's columns, in voxels.
    seed : int
    """

    shape: tuple[int, int, int]
    centres: np.ndarray
    rotations: np.ndarray
    semi_axes: np.ndarray
    seed: int

    def render(self, box: Box | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The image (uint8) and instance labels (uint16) of ``box``."""
        box = Box.from_shape(self.shape) if box is None else box.clip(self.shape)
        grid = BlockGrid(self.shape, NOISE_TILE)
        image = CYTOPLASM + TEXTURE * tiles.smooth_noise(
            box, grid, (0, 3.0, 3.0), seed=self.seed, stream=TEXTURE_STREAM)
        labels = np.zeros(box.shape, dtype=np.uint16)
        reach = self.semi_axes.max(axis=1)[:, None] + 1
        touching = np.all(self.centres - reach < box.stop, axis=1) & np.all(
            self.centres + reach > box.start, axis=1)
        for k in np.flatnonzero(touching):
            lo = np.maximum(np.floor(self.centres[k] - reach[k]).astype(int), box.start)
            hi = np.minimum(np.ceil(self.centres[k] + reach[k]).astype(int), box.stop)
            sub = Box(tuple(lo), tuple(hi))
            local = [
                (np.arange(a, b) - c).reshape([-1 if i == j else 1 for j in range(3)])
                for i, (a, b, c) in enumerate(zip(lo, hi, self.centres[k]))
            ]
            # Coordinates along the organelle's axes, then its ellipsoidal radius q.
            body = [sum(p * r for p, r in zip(local, column)) for column in self.rotations[k].T]
            q = np.sqrt(sum((b / a) ** 2 for b, a in zip(body, self.semi_axes[k])))
            depth = (1 - q) * self.semi_axes[k].min()  # approximate distance inside the surface
            inside = q <= 1
            stripes = np.cos(2 * np.pi * body[0] / 6.0) > 0.6
            value = np.where(depth < RIM, MEMBRANE, MATRIX - CRISTAE * stripes)
            view = sub.relative_to(box)
            image[view] = np.where(inside, value, image[view])
            labels[view] = np.where(inside, k + 1, labels[view])
        image += NOISE * tiles.normal(box, grid, seed=self.seed, stream=NOISE_STREAM)
        return np.clip(np.rint(image), 0, 255).astype(np.uint8), labels


def mito(
    shape: Sequence[int] = (32, 256, 256), *, fraction: float = DEFAULT_FRACTION, seed: int = 0
) -> Mito:
    """A synthetic EM volume of ``shape`` (``z, y, x``) with organelles.

    Organelles are placed at random, without overlap, until their volume
    reaches ``fraction`` of the volume or no more fit; parts cut off by the
    volume's faces count too, so the labelled fraction is usually lower.

    Examples
    --------
    >>> em = mito((12, 64, 64), seed=2)
    >>> image, labels = em.render()
    >>> image.dtype, labels.dtype, int(labels.max()) == len(em.centres)
    (dtype('uint8'), dtype('uint16'), True)
    """
    shape = positive(shape, 3, "shape")
    rng = tiles.rng_for(seed, 0)
    size = np.asarray(shape, dtype=float)
    target = fraction * float(np.prod(size))
    mean_volume = 4 / 3 * np.pi * np.mean(SEMI_AXES[0]) * np.mean(SEMI_AXES[1]) ** 2
    attempts = 10 * int(target / mean_volume) + 100
    centres = np.empty((min(attempts, np.iinfo(np.uint16).max), 3))
    semi_axes = np.empty_like(centres)
    rotations = []
    n, volume = 0, 0.0
    for _ in range(attempts):
        if volume >= target or n == len(centres):
            break
        semi = np.array([rng.uniform(*SEMI_AXES[0]), *rng.uniform(*SEMI_AXES[1], 2)])
        centre = rng.uniform(0, 1, 3) * size
        # Bounding spheres must not overlap.
        gaps = np.linalg.norm(centres[:n] - centre, axis=1) - semi_axes[:n, 0]
        if np.any(gaps < semi[0] + RIM):
            continue
        centres[n], semi_axes[n] = centre, semi
        rotations.append(_random_rotation(rng))
        volume += 4 / 3 * np.pi * float(np.prod(semi))
        n += 1
    return Mito(shape=shape, centres=centres[:n], rotations=np.array(rotations).reshape(-1, 3, 3),
                semi_axes=semi_axes[:n], seed=int(seed))


def labels_path(path: str | Path) -> Path:
    """Where :func:`write_mito` puts the labels of the image ``path``: ``STEM_labels.tif``."""
    path = Path(path)
    return path.with_name(f"{path.stem}_labels{path.suffix or '.tif'}")


def write_mito(
    path: str | Path, volume: Mito, *, overwrite: bool = False, progress: bool = True
) -> tuple[Path, Path]:
    """Write the image to ``path`` and the labels to :func:`labels_path`, slab by slab.

    The TIFFs are created at full size with tifffile and filled a few pages
    at a time, so the volume may exceed memory.
    """
    path = require_suffix(path, TIFF_SUFFIXES, "TIFF")
    grid = BlockGrid(volume.shape, (SLAB, *volume.shape[1:]))
    layouts = [(volume.shape, np.uint8, {"axes": "ZYX"}), (volume.shape, np.uint16, {"axes": "ZYX"})]
    with replacing([path, labels_path(path)], overwrite=overwrite) as temps:
        fill_tiffs(temps, layouts, ((box.start[0], volume.render(box)) for box in grid.boxes()),
                   total=grid.num_blocks, label=f"synth mito {path.name}", progress=progress)
    return path, labels_path(path)
