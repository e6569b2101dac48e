"""Patch augmentation for training: flips, quarter turns, small rotations,
shears and zooms, elastic deformation, noise, intensity and gamma changes, blur.

Spatial changes other than flips and quarter turns are expressed as *source
coordinates*: output voxel ``p`` of a patch whose first corner lies at
``origin`` takes the volume's value at::

    origin + c + M (p - c) + d(p)        c = (patch_shape - 1) / 2

where ``M`` is a rotation, shear and zoom (drawn in physical space, so anisotropic
voxels are respected) and ``d`` an elastic displacement interpolated with
cubic B-splines from a coarse grid of random control displacements.
Coordinates outside the volume are mirrored back into it (scipy's
``mode="mirror"``). Images are interpolated linearly, labels and masks by
nearest neighbour; linear interpolation never leaves the range of the
neighbouring values, so a clipped distance map stays within its clip range.

Because coordinates are global and interpolation is local (no spline
prefilter), warping the block given by :func:`source_box` equals warping the
whole volume with the same coordinates and cropping the patch. Flips and
quarter turns (in the last two axes) are applied to the warped patch, and
intensity changes, gamma and blur to the image only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace

import numpy as np
from scipy import ndimage

from volumetric.errors import InputError, check_choice
from volumetric.geometry import Box


# The augmentations that can be switched off by name, and the settings that does.
SWITCHES: dict[str, dict[str, bool | float | tuple[float, float]]] = {
    "flip": {"flip": False},
    "rotate90": {"rotate90": False},
    "rotate": {"rotate_degrees": 0.0},
    "shear": {"shear": 0.0},
    "elastic": {"elastic_magnitude": 0.0},
    "intensity": {"intensity_scale": 0.0, "intensity_shift": 0.0},
    "noise": {"noise_std": 0.0},
    "scale": {"zoom": (1.0, 1.0)},
    "gamma": {"gamma": (1.0, 1.0)},
    "blur": {"blur_sigma": 0.0},
}
# Ranges (low, high) of positive factors; (1, 1) is off.
_RANGES = ("zoom", "gamma")


@dataclass(frozen=True)
class AugmentConfig:
    """Which augmentations to draw, and how strong. Set a value to 0/False (a range to
    (1, 1)) to switch it off.

    Parameters
    ----------
    flip : bool
        Flip each spatial axis with probability 1/2.
    rotate90 : bool
        Turn by 0, 90, 180 or 270 degrees in the y-x plane (only 0 or 180
        when the patch is not square there).
    spatial_probability : float
        Probability that a patch is warped by the rotation, shear, zoom and
        elastic deformation below (drawn together).
    rotate_degrees : float
        Small rotations, uniform in +-``rotate_degrees`` in each plane
        (one plane in 2D, three in 3D).
    shear : float
        Shear factors, uniform in +-``shear`` for each pair of axes.
    elastic_magnitude : float
        Standard deviation of the control-point displacements, in voxels
        of the finest axis (coarser axes move proportionally less).
    elastic_spacing : int
        Distance between control points, in voxels (see :func:`elastic_from_alpha_sigma`).
    zoom : (float, float)
        Zoom factor range (log-uniform; above 1 magnifies), the same factor on every axis.
    intensity_probability : float
        Probability that the image gets the scale, shift and noise below.
    intensity_scale : float
        Image multiplied by a factor uniform in ``1 +- intensity_scale``.
    intensity_shift : float
        Offset uniform in +-``intensity_shift`` added to the image.
    noise_std : float
        Standard deviation of additive Gaussian noise (normalised units).
    gamma : (float, float)
        Gamma range (log-uniform): each channel of the image, rescaled to [0, 1]
        over the patch, is raised to the power gamma and scaled back.
    gamma_probability : float
        Probability that the image gets the gamma change.
    blur_sigma : float
        Largest Gaussian blur: sd uniform in [0, ``blur_sigma``] voxels of the
        finest axis (coarser axes proportionally less).
    blur_probability : float
        Probability that the image is blurred.
    """

    flip: bool = True
    rotate90: bool = True
    spatial_probability: float = 0.5
    rotate_degrees: float = 15.0
    shear: float = 0.05
    elastic_magnitude: float = 2.0
    elastic_spacing: int = 16
    intensity_probability: float = 0.5
    intensity_scale: float = 0.1
    intensity_shift: float = 0.1
    noise_std: float = 0.05
    zoom: tuple[float, float] = (1.0, 1.0)
    gamma: tuple[float, float] = (1.0, 1.0)
    gamma_probability: float = 0.5
    blur_sigma: float = 0.0
    blur_probability: float = 0.5

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool):
                continue
            if f.name in _RANGES:
                low, high = value
                if not (np.isfinite(low) and np.isfinite(high) and 0 < low <= high):
                    raise InputError(f"augmentation {f.name}={tuple(value)} must be two numbers "
                                     "0 < low <= high")
                object.__setattr__(self, f.name, (float(low), float(high)))
                continue
            if not np.isfinite(value) or value < 0:
                raise InputError(f"augmentation {f.name}={value} must be a number >= 0")
            if f.name.endswith("probability") and value > 1:
                raise InputError(f"augmentation {f.name}={value} must lie in [0, 1]")
        if self.elastic_spacing < 1:
            raise InputError(f"augmentation elastic_spacing={self.elastic_spacing} must be >= 1")

    def without(self, names: Sequence[str]) -> AugmentConfig:
        """This configuration with the augmentations ``names`` (keys of :data:`SWITCHES`) off.

        Raises
        ------
        InputError
            An unknown name.
        """
        changes: dict[str, bool | float] = {}
        for name in names:
            check_choice(name, SWITCHES, "augmentation")
            changes.update(SWITCHES[name])
        return replace(self, **changes)


@dataclass(frozen=True, eq=False)
class AugmentParams:
    """The augmentation drawn for one patch (see :func:`sample_augmentation`)."""

    flips: tuple[bool, ...]
    quarter_turns: int
    matrix: np.ndarray | None
    control: np.ndarray | None
    control_spacing: int
    scale: float
    shift: float
    noise_std: float
    noise_seed: int
    gamma: float = 1.0
    blur_sigma: tuple[float, ...] = ()

    @property
    def warps(self) -> bool:
        """Whether the patch is resampled (rotation, shear or elastic deformation)."""
        return self.matrix is not None or self.control is not None


def _rotation(angles: np.ndarray, ndim: int) -> np.ndarray:
    planes = [(0, 1)] if ndim == 2 else [(1, 2), (0, 2), (0, 1)]
    matrix = np.eye(ndim)
    for angle, (a, b) in zip(angles, planes):
        turn = np.eye(ndim)
        turn[a, a] = turn[b, b] = np.cos(angle)
        turn[a, b], turn[b, a] = -np.sin(angle), np.sin(angle)
        matrix = turn @ matrix
    return matrix


def sample_augmentation(
    rng: np.random.Generator,
    config: AugmentConfig,
    shape: Sequence[int],
    spacing: Sequence[float],
) -> AugmentParams:
    """Draw the augmentation of one patch.

    Every value is drawn whatever the configuration, so switching one
    augmentation off leaves the others' draws unchanged.

    Parameters
    ----------
    rng : numpy.random.Generator
        The patch's own generator (e.g. seeded with seed, epoch and index).
    config : AugmentConfig
        What to draw.
    shape : tuple of int
        Spatial patch shape (2 or 3 axes).
    spacing : tuple of float
        Voxel size along those axes.

    Returns
    -------
    AugmentParams
    """
    shape = tuple(int(s) for s in shape)
    ndim = len(shape)
    spacing_arr = np.asarray(spacing, dtype=float)
    flips = rng.random(ndim) < 0.5
    turns = int(rng.integers(4))
    warp = rng.random() < config.spatial_probability
    angles = rng.uniform(-1, 1, 1 if ndim == 2 else 3) * np.deg2rad(config.rotate_degrees)
    shear = rng.uniform(-1, 1, (ndim, ndim)) * config.shear
    grid = tuple(-(-(s - 1) // config.elastic_spacing) + 1 for s in shape)
    control = rng.normal(0.0, 1.0, (ndim, *grid))
    control *= config.elastic_magnitude * (spacing_arr.min() / spacing_arr).reshape(-1, *[1] * ndim)
    intensity = rng.random() < config.intensity_probability
    scale = rng.uniform(-1, 1) * config.intensity_scale
    shift = rng.uniform(-1, 1) * config.intensity_shift
    noise_seed = int(rng.integers(2**63))
    zoom = np.exp(rng.uniform(*np.log(config.zoom)))
    gamma = np.exp(rng.uniform(*np.log(config.gamma))) if rng.random() < config.gamma_probability \
        else 1.0
    blur = rng.uniform(0, config.blur_sigma) if rng.random() < config.blur_probability else 0.0

    matrix = None
    if warp and (config.rotate_degrees > 0 or config.shear > 0 or config.zoom != (1.0, 1.0)):
        np.fill_diagonal(shear, 0.0)
        physical = _rotation(angles, ndim) @ (np.eye(ndim) + shear) / zoom
        matrix = physical * spacing_arr[None, :] / spacing_arr[:, None]
    if not config.rotate90:
        turns = 0
    elif shape[-1] != shape[-2]:
        turns = 2 * (turns % 2)
    return AugmentParams(
        flips=tuple(bool(f) for f in flips) if config.flip else (False,) * ndim,
        quarter_turns=turns,
        matrix=matrix,
        control=control if warp and config.elastic_magnitude > 0 else None,
        control_spacing=config.elastic_spacing,
        scale=1.0 + scale if intensity else 1.0,
        shift=shift if intensity else 0.0,
        noise_std=config.noise_std if intensity else 0.0,
        noise_seed=noise_seed,
        gamma=float(gamma),
        blur_sigma=tuple(float(blur * spacing_arr.min() / s) for s in spacing_arr) if blur else (),
    )


def elastic_from_alpha_sigma(alpha: float, sigma: float) -> tuple[float, int]:
    """``elastic_magnitude`` and ``elastic_spacing`` for Simard et al.'s ``alpha`` and ``sigma``.

    Simard's field is uniform noise in [-1, 1] per voxel, smoothed by a
    Gaussian of sd ``sigma`` voxels and multiplied by ``alpha``; in 2D its
    displacements have sd ``alpha / (2 sqrt(3 pi) sigma)``. Control points
    every ``2 sigma`` voxels give a field of about the same smoothness.

    Examples
    --------
    >>> elastic_from_alpha_sigma(34, 4)
    (1.3844, 8)
    """
    if not (alpha >= 0 and sigma > 0):
        raise InputError(f"--elastic {alpha},{sigma}: ALPHA must be >= 0 and SIGMA > 0")
    return round(alpha / (2 * math.sqrt(3 * math.pi) * sigma), 4), max(1, round(2 * sigma))


def _spline_weights(length: int, points: int, spacing: int) -> np.ndarray:
    """Cubic B-spline interpolation weights from ``points`` control points to ``length`` voxels."""
    positions = np.arange(length, dtype=float)[None, :] / spacing
    weights = np.empty((length, points))
    for j in range(points):
        unit = np.zeros(points)
        unit[j] = 1.0
        weights[:, j] = ndimage.map_coordinates(unit, positions, order=3, mode="nearest")
    return weights


def elastic_displacement(control: np.ndarray, shape: Sequence[int], spacing: int) -> np.ndarray:
    """Dense displacement field (ndim, *shape) interpolated from control displacements.

    Parameters
    ----------
    control : ndarray
        Control-point displacements, shape ``(ndim, *grid)``.
    shape : tuple of int
        Patch shape.
    spacing : int
        Control-point spacing in voxels.
    """
    field = control
    for axis in reversed(range(len(shape))):  # one product per axis, smallest first
        lead, points, rest = field.shape[:axis + 1], field.shape[axis + 1], field.shape[axis + 2:]
        weights = _spline_weights(shape[axis], points, spacing)
        # einsum's own loops: BLAS threads would only contend with the other loader workers.
        product = np.einsum("si,lir->lsr", weights, field.reshape(-1, points, int(np.prod(rest))))
        field = product.reshape(*lead, shape[axis], *rest)
    return field


def mirror_coordinates(coords: np.ndarray, volume_shape: Sequence[int]) -> np.ndarray:
    """Fold coordinates ``(ndim, ...)`` into ``[0, n - 1]`` by mirroring at the faces."""
    out = coords.copy()
    for axis, n in enumerate(volume_shape):
        inside = coords[axis].min() >= 0 and coords[axis].max() <= n - 1
        if inside:
            continue
        if n == 1:
            out[axis] = 0.0
            continue
        period = 2.0 * (n - 1)
        folded = np.mod(coords[axis], period)
        out[axis] = np.where(folded > n - 1, period - folded, folded)
    return out


def source_coordinates(
    params: AugmentParams,
    shape: Sequence[int],
    origin: Sequence[int],
    volume_shape: Sequence[int],
) -> np.ndarray:
    """Volume coordinates (ndim, *shape) sampled by a warped patch, folded into the volume.

    Parameters
    ----------
    params : AugmentParams
        A warping augmentation (``params.warps``).
    shape : tuple of int
        Patch shape.
    origin : tuple of int
        First corner of the unwarped patch in the volume.
    volume_shape : tuple of int
        Spatial shape of the volume.
    """
    shape = tuple(shape)
    ndim = len(shape)
    centre = (np.asarray(shape, dtype=float) - 1) / 2
    offsets = [(np.arange(n) - c).reshape([-1 if k == a else 1 for k in range(ndim)])
               for a, (n, c) in enumerate(zip(shape, centre))]
    matrix = np.eye(ndim) if params.matrix is None else params.matrix
    if params.control is not None:
        coords = elastic_displacement(params.control, shape, params.control_spacing)
    else:
        coords = np.zeros((ndim, *shape))
    for i in range(ndim):
        coords[i] += sum(matrix[i, j] * offsets[j] for j in range(ndim)) + (origin[i] + centre[i])
    return mirror_coordinates(coords, volume_shape)


def source_box(coords: np.ndarray, volume_shape: Sequence[int]) -> Box:
    """The smallest box of the volume that linear or nearest interpolation at ``coords`` reads."""
    flat = coords.reshape(len(volume_shape), -1)
    lo = np.floor(flat.min(axis=1)).astype(int)
    hi = np.floor(flat.max(axis=1)).astype(int) + 2
    return Box(tuple(lo), tuple(hi)).clip(volume_shape)


def warp(block: np.ndarray, coords: np.ndarray, *, order: int) -> np.ndarray:
    """Sample every channel of ``block`` (C, ...) at ``coords`` relative to the block.

    Parameters
    ----------
    block : ndarray
        Channels first, then the spatial axes of ``coords``.
    coords : ndarray
        ``(ndim, *shape)`` coordinates inside the block (see :func:`source_box`).
    order : {0, 1}
        0: nearest neighbour (labels, masks); 1: linear (images, distance maps).

    Returns
    -------
    ndarray
        float32, ``(C, *shape)``.
    """
    return np.stack([
        ndimage.map_coordinates(channel, coords, order=order, mode="nearest", prefilter=False,
                                output=np.float32)
        for channel in block
    ])


def flip_rotate(array: np.ndarray, params: AugmentParams) -> np.ndarray:
    """Apply the flips and quarter turns of ``params`` to ``array`` (C, *spatial)."""
    axes = tuple(1 + a for a, f in enumerate(params.flips) if f)
    out = np.flip(array, axes) if axes else array
    if params.quarter_turns:
        out = np.rot90(out, params.quarter_turns, axes=(-2, -1))
    return out


def adjust_gamma(image: np.ndarray, gamma: float) -> np.ndarray:
    """Each channel of ``image`` (C, ...) rescaled to [0, 1], raised to ``gamma``, scaled back."""
    out = np.asarray(image, dtype=np.float32)
    if gamma == 1.0:
        return out
    channels = []
    for channel in out:
        low, high = channel.min(), channel.max()
        span = high - low
        channels.append(low + span * ((channel - low) / span) ** np.float32(gamma) if span > 0
                        else channel)
    return np.stack(channels).astype(np.float32, copy=False)


def blur(image: np.ndarray, sigma: Sequence[float]) -> np.ndarray:
    """Gaussian blur of every channel of ``image`` (C, ...) with sd ``sigma`` per spatial axis."""
    out = np.asarray(image, dtype=np.float32)
    if not any(sigma):
        return out
    return np.stack([ndimage.gaussian_filter(channel, sigma, mode="mirror") for channel in out])


def adjust_intensity(image: np.ndarray, params: AugmentParams) -> np.ndarray:
    """Gamma, blur, scale, shift and noise of a normalised image (float32)."""
    out = blur(adjust_gamma(image, params.gamma), params.blur_sigma)
    out = out * np.float32(params.scale) + np.float32(params.shift)
    if params.noise_std > 0:
        noise = np.random.default_rng(params.noise_seed).standard_normal(out.shape, np.float32)
        out += noise * np.float32(params.noise_std)
    return out
