"""Brightfield defocus series of cells with an in-focus fluorescence target of the nuclei.

Each sample is an independent field of cells (seeded by ``(seed, sample)``),
rendered whole: a sample is the unit of computation. Cells and nuclei are
weak phase objects (soft-edged ellipses); brightfield plane ``j`` at
defocus ``z_j`` follows the transport-of-intensity approximation

    I_j = B * (1 - absorption * phi_j - contrast * z_j * laplacian(phi_j)),

with ``phi_j`` the phase blurred more the farther the plane is from focus,
so cells are faint in focus and show bright/dark halos that swap sign
across it. The fluorescence target is the in-focus nuclei. Both are uint16
with shot-like noise.

:func:`write_zstack` writes ``PREFIX_brightfield.tif`` ``(n, planes, y, x)``
(tifffile axes ``IZYX``, defocus in micrometers in the metadata) and
``PREFIX_fluorescence.tif`` ``(n, y, x)`` (axes ``IYX``), one sample at a time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage
from scipy.special import erfc

from volumetric.io import replacing
from volumetric.testing.output import TIFF_SUFFIXES, fill_tiffs
from volumetric.testing.params import positive
from volumetric.testing.tiles import rng_for

DEFOCUS_UM = 3.0  # the outermost planes' distance from focus
CELL_RADIUS = (12.0, 22.0)  # pixels
BRIGHTFIELD, FLUORESCENCE_BACKGROUND = 2000.0, 100.0
ABSORPTION, CONTRAST = 0.04, 3.0
BLUR_IN_FOCUS, BLUR_PER_UM2 = 0.8, 0.6  # sigma^2 = in-focus^2 + per-um^2 * z^2 (pixels)
NOISE_STREAM = 1


def _add_ellipse(image: np.ndarray, value: float, centre: np.ndarray, radii: np.ndarray,
                 angle: float) -> None:
    """Add ``value`` inside an ellipse to ``image``, with edges about one pixel wide."""
    lo = np.maximum(np.floor(centre - radii.max() - 5).astype(int), 0)
    hi = np.minimum(np.ceil(centre + radii.max() + 5).astype(int), image.shape)
    if np.any(hi <= lo):
        return
    y, x = np.ogrid[lo[0]:hi[0], lo[1]:hi[1]]
    dy, dx = y - centre[0], x - centre[1]
    u = dy * np.cos(angle) + dx * np.sin(angle)
    v = -dy * np.sin(angle) + dx * np.cos(angle)
    q = np.sqrt((u / radii[0]) ** 2 + (v / radii[1]) ** 2)
    image[lo[0]:hi[0], lo[1]:hi[1]] += value * 0.5 * erfc((q - 1) * radii.min() / np.sqrt(2))


@dataclass(frozen=True)
class ZStack:
    """Synthetic brightfield stacks and fluorescence targets; build with :func:`zstack`.

    Attributes
    ----------
    shape : tuple of int
        ``y, x`` of one image.
    count : int
        Number of samples.
    defocus : ndarray, shape (planes,)
        Distance of each brightfield plane from focus, micrometers.
    seed : int
    """

    shape: tuple[int, int]
    count: int
    defocus: np.ndarray
    seed: int

    def phase_and_nuclei(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """The phase image and the nuclei's fluorescence (noise-free) of sample ``index``."""
        rng = rng_for(self.seed, 0, index)
        phase = np.zeros(self.shape)
        nuclei = np.zeros(self.shape)
        spacing = 2.2 * CELL_RADIUS[1]
        for gy in np.arange(spacing / 2, self.shape[0], spacing):
            for gx in np.arange(spacing / 2, self.shape[1], spacing):
                if rng.random() < 0.25:
                    continue
                centre = np.array([gy, gx]) + rng.uniform(-0.2, 0.2, 2) * spacing
                radii = rng.uniform(*CELL_RADIUS) * rng.uniform(0.75, 1.0, 2)
                angle = rng.uniform(0, np.pi)
                _add_ellipse(phase, rng.uniform(0.6, 1.0), centre, radii, angle)
                offset = rng.uniform(-0.25, 0.25, 2) * radii.min()
                nucleus = (centre + offset, radii * rng.uniform(0.35, 0.5), angle)
                _add_ellipse(phase, rng.uniform(0.4, 0.7), *nucleus)
                _add_ellipse(nuclei, rng.uniform(600, 1200), *nucleus)
        return phase, nuclei

    def sample(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Brightfield ``(planes, y, x)`` and fluorescence ``(y, x)`` of sample ``index``."""
        phase, nuclei = self.phase_and_nuclei(index)
        rng = rng_for(self.seed, NOISE_STREAM, index)
        planes = []
        for z in self.defocus:
            sigma = np.sqrt(BLUR_IN_FOCUS**2 + BLUR_PER_UM2 * z**2)
            blurred = ndimage.gaussian_filter(phase, sigma, mode="reflect")
            laplacian = ndimage.gaussian_laplace(phase, sigma, mode="reflect")
            planes.append(BRIGHTFIELD * (1 - ABSORPTION * blurred - CONTRAST * z * laplacian))
        bright = np.asarray(planes)
        bright += np.sqrt(BRIGHTFIELD) * rng.standard_normal(bright.shape)
        fluorescence = rng.poisson(FLUORESCENCE_BACKGROUND + nuclei)
        top = np.iinfo(np.uint16).max
        return (np.clip(np.rint(bright), 0, top).astype(np.uint16),
                np.minimum(fluorescence, top).astype(np.uint16))


def zstack(
    shape: Sequence[int] = (256, 256), count: int = 8, *, planes: int = 7, seed: int = 0
) -> ZStack:
    """``count`` samples of ``planes``-plane brightfield stacks of ``shape`` (``y, x``).

    Examples
    --------
    >>> z = zstack((64, 80), 2, seed=3)
    >>> bright, fluo = z.sample(1)
    >>> bright.shape, fluo.shape, bright.dtype
    ((7, 64, 80), (64, 80), dtype('uint16'))
    """
    shape = positive(shape, 2, "image shape (y, x)")
    count = positive([count], 1, "number of samples")[0]
    planes = positive([planes], 1, "number of planes")[0]
    defocus = np.linspace(-DEFOCUS_UM, DEFOCUS_UM, planes) if planes > 1 else np.zeros(1)
    return ZStack(shape=shape, count=count, defocus=defocus, seed=int(seed))


def output_paths(prefix: str | Path) -> tuple[Path, Path]:
    """``PREFIX_brightfield.tif`` and ``PREFIX_fluorescence.tif`` (a ``.tif`` suffix is dropped)."""
    prefix = Path(prefix)
    if prefix.suffix.lower() in TIFF_SUFFIXES:
        prefix = prefix.with_suffix("")
    return (prefix.with_name(f"{prefix.name}_brightfield.tif"),
            prefix.with_name(f"{prefix.name}_fluorescence.tif"))


def write_zstack(
    prefix: str | Path, stacks: ZStack, *, overwrite: bool = False, progress: bool = True
) -> tuple[Path, Path]:
    """Write the brightfield and fluorescence TIFFs of :func:`output_paths`, sample by sample."""
    paths = output_paths(prefix)
    layouts = [
        ((stacks.count, len(stacks.defocus), *stacks.shape), np.uint16,
         {"axes": "IZYX", "defocus_um": stacks.defocus.tolist()}),
        ((stacks.count, *stacks.shape), np.uint16, {"axes": "IYX"}),
    ]
    with replacing(paths, overwrite=overwrite) as temps:
        fill_tiffs(temps, layouts, ((k, stacks.sample(k)) for k in range(stacks.count)),
                   total=stacks.count, label=f"synth zstack {paths[0].name}", progress=progress)
    return paths
